"""Paired bootstrap of the change in a task's score between two models (a base and another).

Each task's result keeps its per-item outcomes under ``per_item`` (see `per_item_sts` and
`per_item_mean`): the gold score and cosine of every STS pair, or the metric of every retrieval query /
reranking sample. The change "other minus base" is re-computed on resamples of those items, the *same*
resampled items for both models (``scipy.stats.bootstrap(..., paired=True)``), which gives a 95%
percentile interval for the change. An interval that covers zero means the test set cannot tell the
two models apart; the report and ``synthembed evaluate --compare`` mark such changes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
_DIGITS = 6  # cosines and per-item metrics are stored rounded: far below any difference that matters


MAIN_SCORE_KEYS = ("spearman", "ndcg@10", "ndcg_at_10", "map", "mrr@10", "main_score")


def main_score(result: dict[str, Any]) -> float | None:
    """The headline number of one task's result (Spearman for STS, nDCG@10 for retrieval, MAP for reranking)."""
    named = result.get("main_metric")
    if isinstance(named, str) and isinstance(result.get(named), (int, float)):
        return float(result[named])
    for key in MAIN_SCORE_KEYS:
        if isinstance(result.get(key), (int, float)):
            return float(result[key])
    return None


def digest(parts: Iterable[str]) -> str:
    """A short fingerprint of the items a score was computed over (two results pair only if equal)."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode("utf-8"))
        hasher.update(b"\x00")
    return hasher.hexdigest()[:16]


def per_item_sts(sentences1: Sequence[str], sentences2: Sequence[str], gold: np.ndarray, cosine: np.ndarray) -> dict[str, Any]:
    """``per_item`` of an STS result: statistic = Spearman(gold, cosine) x100 over the pairs."""
    fingerprint = digest(f"{a}\t{b}\t{g!r}" for a, b, g in zip(sentences1, sentences2, gold.tolist()))
    return {
        "statistic": "spearman",
        "digest": fingerprint,
        "gold": [float(g) for g in gold.tolist()],
        "values": np.round(cosine.astype(np.float64), _DIGITS).tolist(),
    }


def per_item_mean(ids: Sequence[str], values: Sequence[float], metric: str) -> dict[str, Any]:
    """``per_item`` of a result whose score is a mean over items (queries, samples): statistic = mean x100."""
    return {
        "statistic": "mean",
        "metric": metric,
        "digest": digest(ids),
        "values": np.round(np.asarray(values, dtype=np.float64), _DIGITS).tolist(),
    }


@dataclass(frozen=True)
class Change:
    """Other minus base on one task, with its paired bootstrap interval (all x100, like the scores)."""

    task: str
    base: float
    other: float
    delta: float
    low: float | None  # None: no per-item data in one of the results (interval unknown)
    high: float | None
    n: int
    confidence: float = CONFIDENCE

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def covers_zero(self) -> bool:
        """True when the interval includes 0: the change is not distinguishable from noise."""
        return self.has_interval and self.low <= 0.0 <= self.high  # type: ignore[operator]

    @property
    def significant(self) -> bool:
        return self.has_interval and not self.covers_zero

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "base": self.base, "other": self.other, "delta": self.delta,
            "ci_low": self.low, "ci_high": self.high, "n": self.n, "confidence": self.confidence,
            "covers_zero": self.covers_zero if self.has_interval else None,
        }


def _spearman_rows(gold: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Spearman along the last axis of (..., n) arrays, with average ranks for ties."""
    ranked_gold = stats.rankdata(gold, axis=-1)
    ranked_pred = stats.rankdata(predicted, axis=-1)
    gc = ranked_gold - ranked_gold.mean(axis=-1, keepdims=True)
    pc = ranked_pred - ranked_pred.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((gc * gc).sum(axis=-1) * (pc * pc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (gc * pc).sum(axis=-1) / denominator


def _spearman_change(gold: np.ndarray, base: np.ndarray, other: np.ndarray, axis: int = -1) -> np.ndarray:
    gold, base, other = (np.moveaxis(a, axis, -1) for a in (gold, base, other))
    return 100.0 * (_spearman_rows(gold, other) - _spearman_rows(gold, base))


def _mean_change(base: np.ndarray, other: np.ndarray, axis: int = -1) -> np.ndarray:
    return 100.0 * (np.mean(other, axis=axis) - np.mean(base, axis=axis))


def paired_change(
    task: str,
    base: dict[str, Any],
    other: dict[str, Any],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Change:
    """The change ``other - base`` in a task's main score, with a paired bootstrap interval.

    `base` and `other` are one task's entries of two results.json files. Raises ValueError when both
    carry per-item data but over different items (another split, another data file).
    """
    base_score, other_score = main_score(base), main_score(other)
    if base_score is None or other_score is None:
        raise ValueError(f"{task}: a result has no main score")
    items_a, items_b = base.get("per_item"), other.get("per_item")
    if not items_a or not items_b:
        return Change(task, base_score, other_score, other_score - base_score, None, None, int(other.get("n") or 0), confidence)
    if items_a.get("digest") != items_b.get("digest") or items_a.get("statistic") != items_b.get("statistic"):
        raise ValueError(f"{task}: the two results were computed over different items (split or data file differ)")
    values_a = np.asarray(items_a["values"], dtype=np.float64)  # (n,)
    values_b = np.asarray(items_b["values"], dtype=np.float64)  # (n,)
    rng = np.random.default_rng(seed)
    if items_a["statistic"] == "spearman":
        gold = np.asarray(items_a["gold"], dtype=np.float64)  # (n,)
        delta = float(_spearman_change(gold, values_a, values_b))
        data: tuple[np.ndarray, ...] = (gold, values_a, values_b)
        statistic = _spearman_change
    else:
        delta = float(_mean_change(values_a, values_b))
        data = (values_a, values_b)
        statistic = _mean_change
    if np.array_equal(values_a, values_b):
        low = high = 0.0  # identical outcomes on every item: every resample's change is exactly 0
    else:
        result = stats.bootstrap(
            data, statistic, paired=True, vectorized=True, n_resamples=n_resamples,
            confidence_level=confidence, method="percentile", batch=250, rng=rng,
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isnan(low) or math.isnan(high):
            low = high = None  # type: ignore[assignment]
    return Change(task, base_score, other_score, delta, low, high, len(values_a), confidence)


def compare_results(base: dict[str, Any], other: dict[str, Any], **kwargs: Any) -> list[Change]:
    """`paired_change` for every task both results.json dicts scored (in `other`'s order)."""
    changes = []
    for task, result in other.get("tasks", {}).items():
        if task in base.get("tasks", {}):
            changes.append(paired_change(task, base["tasks"][task], result, **kwargs))
    return changes


def format_changes(changes: Sequence[Change], base_name: str, other_name: str) -> str:
    """A terminal table of the changes, marking those whose interval covers zero."""
    header = f"change from {base_name} to {other_name} (x100; paired bootstrap {int(CONFIDENCE * 100)}% interval)"
    rows = [("task", "base", "other", "change", "95% interval", "")]
    for change in changes:
        interval = f"[{change.low:+.2f}, {change.high:+.2f}]" if change.has_interval else "n/a (no per-item data)"
        mark = "covers 0: not distinguishable from noise" if change.covers_zero else ("" if change.has_interval else "")
        rows.append((change.task, f"{change.base:.2f}", f"{change.other:.2f}", f"{change.delta:+.2f}", interval, mark))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [header]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths)) + ("  " + row[5] if row[5] else ""))
    return "\n".join(lines)
