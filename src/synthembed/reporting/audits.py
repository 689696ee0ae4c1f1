"""Checks of a run's data and training that warn in plain words when something is off.

Each check compares one number with a threshold written down here and in docs/report.md. A check that
fires becomes a warning at the top of the report; a check without enough data says so and passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

NEGATIVE_CLOSER_SHARE = 0.5  # warn when in more than half the rows the negative is at least as close as the positive
# (the check also warns when the negatives are, on average, at least as close as the positives)
DROPPED_SHARE = 0.25  # warn when more than a quarter of the generated rows were dropped
CHAIN_NOT_FALLING_SHARE = 0.25  # warn when more than a quarter of the chains do not fall with position
DEV_MIN_GAIN = 0.1  # points (x100): a dev gain smaller than this is rounding and noise, not "beating" the base


@dataclass
class Audit:
    check: str  # short name, e.g. "negatives closer than positives"
    subject: str  # what was checked (a stage)
    fired: bool
    message: str  # one plain sentence: the number, the threshold, and what it means
    threshold: str


def negatives_closer(subject: str, positive: Sequence[float], negative: Sequence[float], model: str, label: str = "negative") -> Audit:
    """Rows where cos(anchor, negative) >= cos(anchor, positive): the contrastive signal is inverted there.

    Fires when the mean negative cosine is at least the mean positive one, or when more than
    `NEGATIVE_CLOSER_SHARE` of the rows are inverted.
    """
    threshold = f"mean negative cosine >= mean positive cosine, or more than {NEGATIVE_CLOSER_SHARE:.0%} of rows inverted"
    if not len(positive):
        return Audit("negatives closer than positives", subject, False, "no complete rows to check", threshold)
    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    share = float(np.mean(neg >= pos))
    closer_on_average = float(neg.mean()) >= float(pos.mean())
    fired = share > NEGATIVE_CLOSER_SHARE or closer_on_average
    message = (
        f"Under {model} the {label}s are on average {'at least as close to' if closer_on_average else 'farther from'} "
        f"the anchor {'as' if closer_on_average else 'than'} the positives (mean cosine {neg.mean():.2f} vs {pos.mean():.2f}), "
        f"and in {share:.0%} of {len(pos)} rows the {label} is at least as close as the positive."
    )
    if fired:
        message += (" For these rows the training signal is inverted: the model is taught to push away a sentence it finds "
                    "closer than the positive (often a negative that copies the anchor).")
    return Audit("negatives closer than positives", subject, fired, message, threshold)


def dropped_rows(subject: str, kept: int, dropped: Mapping[str, int]) -> Audit:
    """Share of generated rows the filters dropped."""
    threshold = f"more than {DROPPED_SHARE:.0%} of rows"
    total_dropped = int(sum(dropped.values()))
    total = kept + total_dropped
    if total == 0:
        return Audit("rows dropped", subject, False, "no rows were generated", threshold)
    share = total_dropped / total
    reasons = ", ".join(f"{reason.replace('_', ' ')} {n}" for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1]))
    message = f"{total_dropped} of {total} generated rows ({share:.0%}) were dropped" + (f" ({reasons})." if reasons else ".")
    fired = share > DROPPED_SHARE
    if fired:
        message += " A large share of what the generator writes fails the filters: read the dropped rows below before trusting the rest."
    return Audit("rows dropped", subject, fired, message, threshold)


def chains_not_falling(subject: str, taus: Sequence[float], model: str) -> Audit:
    """Chains whose similarity to s0 does not fall with position (Kendall tau <= 0)."""
    threshold = f"more than {CHAIN_NOT_FALLING_SHARE:.0%} of chains"
    if not len(taus):
        return Audit("chains whose similarity does not fall", subject, False, "no chain of 3 or more sentences to check", threshold)
    share = float(np.mean(np.asarray(taus) <= 0))
    message = (
        f"In {share:.0%} of {len(taus)} chains the similarity to the first sentence does not fall with position "
        f"(Kendall tau <= 0 under {model}; mean tau {np.mean(taus):+.2f})."
    )
    fired = share > CHAIN_NOT_FALLING_SHARE
    if fired:
        message += " The ranking these chains teach disagrees with the model's own order."
    return Audit("chains whose similarity does not fall", subject, fired, message, threshold)


def dev_never_beats_base(subject: str, curve: Sequence[tuple[float, float]], base: float | None, base_label: str) -> Audit:
    """A training stage whose dev score never rises above the base model's."""
    threshold = f"best dev score less than {DEV_MIN_GAIN} points above the base model's"
    after = [score for step, score in curve if step > 0]
    if base is None or not after:
        return Audit("dev curve never beats the base model", subject, False, "no dev score after step 0, or no base score, to compare", threshold)
    best = max(after)
    fired = best < base + DEV_MIN_GAIN
    message = f"Best dev score {best:.3f} against {base:.3f} for {base_label} ({best - base:+.3f} points)."
    if fired:
        message += (f" Training never improved on the base model by {DEV_MIN_GAIN} points or more: the selected checkpoint "
                    "is no better than where it started.")
    return Audit("dev curve never beats the base model", subject, fired, message, threshold)
