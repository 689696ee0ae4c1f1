"""Matplotlib figures for the report, each drawn twice as PNG: wide (desktop) and narrow (phones).

A figure's text is sized in points, so a wide figure shrunk to a 390 px screen becomes unreadable; the
narrow drawing is laid out for about 360 px instead, and the page picks one with a media query.
A plot whose data is too small to say anything is not drawn: the builder returns a `Skipped` with the
sentence the report prints in its place.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.ticker import MaxNLocator

MIN_SPAN = 2.0  # points (x100): the smallest y range a score axis shows, so noise never fills the frame
WIDE = (7.2, 3.6)  # inches; shown at up to ~950 px
NARROW = (3.9, 3.6)  # inches; shown at ~360 px
DPI = 130
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


@dataclass
class Figure:
    caption: str
    wide: bytes  # PNG
    narrow: bytes  # PNG


@dataclass
class Skipped:
    caption: str
    reason: str  # one sentence saying why the plot is not drawn


Drawing = Callable[..., None]  # draw(ax, narrow: bool) on a fresh axes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render(caption: str, draw: Drawing, height: float | None = None) -> Figure:
    """Draw `draw(fig, ax, narrow)` at both sizes and return the PNGs."""
    plt = _pyplot()
    images = []
    for size, narrow in ((WIDE, False), (NARROW, True)):
        width, default_height = size
        with plt.rc_context({"font.size": 11 if narrow else 10, "axes.titlesize": 11 if narrow else 10,
                             "legend.fontsize": 10 if narrow else 8}):
            fig, ax = plt.subplots(figsize=(width, height or default_height))
            draw(fig, ax, narrow)
            ax.grid(True, alpha=0.3, linewidth=0.6)
            ax.spines[["top", "right"]].set_visible(False)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
            plt.close(fig)
        images.append(buffer.getvalue())
    return Figure(caption, images[0], images[1])


def honest_limits(values: Sequence[float], min_span: float = MIN_SPAN) -> tuple[float, float]:
    """Axis limits around `values` at least `min_span` wide (centred), with a little margin."""
    low, high = float(np.min(values)), float(np.max(values))
    span = max(high - low, min_span)
    centre = (low + high) / 2
    margin = 0.08 * span
    return centre - span / 2 - margin, centre + span / 2 + margin


@dataclass
class Effect:
    label: str  # "task: model"
    delta: float
    low: float | None
    high: float | None


def effects(caption: str, rows: Sequence[Effect], base: str) -> Figure | Skipped:
    """Forest plot: each model's change from the base per task, with its 95% interval; 0 marked."""
    if not rows:
        return Skipped(caption, "No model other than the base model was evaluated, so there is no change to show.")

    def draw(fig, ax, narrow: bool) -> None:
        y = np.arange(len(rows))[::-1]
        for position, row in zip(y, rows):
            known = row.low is not None and row.high is not None
            significant = known and not (row.low <= 0 <= row.high)
            color = COLORS[0] if significant else "#888888"
            if known:
                ax.plot([row.low, row.high], [position, position], color=color, linewidth=2.2, solid_capstyle="round")
            ax.plot([row.delta], [position], "o", color=color, markersize=6)
        ax.axvline(0.0, color="black", linewidth=1)
        spread = [v for r in rows for v in (r.delta, r.low, r.high) if v is not None] + [0.0]
        ax.set_xlim(*honest_limits(spread, min_span=1.0))
        ax.set_yticks(y, [_wrap(r.label, 14 if narrow else 40) for r in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel(f"change from {base} (points; bars: 95% interval)")
        ax.set_title("Effect of each stage, per task", loc="left")

    return render(caption, draw, height=max(2.2, 0.5 * len(rows) + 1.2))


def dev_curves(
    caption: str,
    segments: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    reference: tuple[str, float] | None,
    ylabel: str,
) -> Figure | Skipped:
    """Dev score against training step, stages one after another, with the base model as a dashed line."""
    points = sum(len(p) for _, p in segments)
    if points < 2:
        return Skipped(caption, f"The run scored the dev set {points} time(s); a curve needs at least two points.")

    def draw(fig, ax, narrow: bool) -> None:
        offset, values = 0.0, []
        for index, (name, curve) in enumerate(segments):
            xs = [offset + x for x, _ in curve]
            ys = [y for _, y in curve]
            values += ys
            ax.plot(xs, ys, marker="o", markersize=3.5, color=COLORS[index % len(COLORS)], label=name)
            if index:
                ax.axvline(offset, color="#999999", linestyle=":", linewidth=1)
            offset = xs[-1] if xs else offset
        if reference is not None:
            label, value = reference
            values.append(value)
            ax.axhline(value, color="black", linestyle="--", linewidth=1, label=label)
        ax.set_ylim(*honest_limits(values))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("training step (stages one after another)")
        ax.set_ylabel(ylabel)
        ax.set_title("Dev score during training", loc="left")
        _legend(ax, narrow)

    return render(caption, draw)


def drop_reasons(caption: str, counts: Mapping[str, Mapping[str, int]]) -> Figure | Skipped:
    """Horizontal bars: rows kept and dropped by reason, per synthesis stage."""
    bars = [(stage, reason, n) for stage, by_reason in counts.items() for reason, n in by_reason.items() if n]
    if not any(reason != "kept" for _, reason, _ in bars):
        return Skipped(caption, "No generated row was dropped.")

    def draw(fig, ax, narrow: bool) -> None:
        labels = [f"{stage}: {reason.replace('_', ' ')}" for stage, reason, _ in bars]
        values = [n for _, _, n in bars]
        colors = ["#2ca02c" if reason == "kept" else "#d62728" for _, reason, _ in bars]
        y = np.arange(len(bars))[::-1]
        ax.barh(y, values, color=colors, height=0.6)
        for position, value in zip(y, values):
            ax.text(value, position, f" {value}", va="center", fontsize=8)
        ax.set_yticks(y, [_wrap(label, 14 if narrow else 40) for label in labels])
        ax.set_xlim(0, max(values) * 1.15)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("rows")
        ax.set_title("Generated rows kept and dropped (by reason)", loc="left")

    return render(caption, draw, height=max(2.0, 0.4 * len(bars) + 1.1))


def pair_scatter(caption: str, positive: Sequence[float], negative: Sequence[float], model: str, minimum: int = 5) -> Figure | Skipped:
    """One dot per row: cos(anchor, positive) against cos(anchor, negative); above the diagonal = inverted."""
    if len(positive) < minimum:
        return Skipped(caption, f"Only {len(positive)} complete row(s); fewer than {minimum} say nothing about the data.")

    def draw(fig, ax, narrow: bool) -> None:
        pos, neg = np.asarray(positive), np.asarray(negative)
        inverted = neg >= pos
        ax.scatter(pos[~inverted], neg[~inverted], s=16, color=COLORS[0], label=f"negative farther ({int((~inverted).sum())})")
        ax.scatter(pos[inverted], neg[inverted], s=16, color=COLORS[1], label=f"negative closer or equal ({int(inverted.sum())})")
        low = float(min(pos.min(), neg.min(), 0.0)) - 0.05
        ax.plot([low, 1.0], [low, 1.0], color="black", linewidth=1, linestyle="--")
        ax.set_xlim(low, 1.02)
        ax.set_ylim(low, 1.02)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("cosine(anchor, positive)")
        ax.set_ylabel("cosine(anchor, negative)")
        ax.set_title(f"Each row under {model}", loc="left")
        _legend(ax, narrow)

    return render(caption, draw, height=4.2)


def groups_strip(caption: str, groups: Mapping[str, Sequence[float]], model: str, minimum: int = 5) -> Figure | Skipped:
    """Dots per group (positive, level 1, level 2, ...) with the group mean as a bar."""
    sizes = {name: len(values) for name, values in groups.items()}
    if not groups or min(sizes.values()) < minimum:
        return Skipped(caption, f"Too few rows per group ({sizes}); fewer than {minimum} say nothing about the data.")

    def draw(fig, ax, narrow: bool) -> None:
        rng = np.random.default_rng(0)
        for index, (name, values) in enumerate(groups.items()):
            jitter = rng.uniform(-0.18, 0.18, size=len(values))
            ax.scatter(index + jitter, values, s=8, alpha=0.6, color=COLORS[index % len(COLORS)])
            ax.plot([index - 0.3, index + 0.3], [np.mean(values)] * 2, color="black", linewidth=2)
        ax.set_xticks(range(len(groups)), [f"{name}\n(n={len(v)})" for name, v in groups.items()])
        ax.set_ylabel("cosine to the query")
        ax.set_title(f"Similarity to the query under {model}", loc="left")

    return render(caption, draw)


def chain_profiles(caption: str, chains: Sequence[Sequence[float]], model: str, minimum: int = 3) -> Figure | Skipped:
    """Similarity to s0 by position: one faint line per chain and the mean in bold."""
    if len(chains) < minimum:
        return Skipped(caption, f"Only {len(chains)} chain(s) were kept; fewer than {minimum} say nothing about their order.")

    def draw(fig, ax, narrow: bool) -> None:
        longest = max(len(c) for c in chains)
        for chain in chains:
            ax.plot(range(1, len(chain) + 1), chain, color="#999999", linewidth=0.8, alpha=0.6)
        means = [np.mean([c[k] for c in chains if len(c) > k]) for k in range(longest)]
        ax.plot(range(1, longest + 1), means, color=COLORS[0], linewidth=2.5, marker="o", label="mean over chains")
        ax.plot([], [], color="#999999", linewidth=0.8, label="one chain")
        ax.set_xticks(range(1, longest + 1))
        ax.set_xlabel("position k in the chain")
        ax.set_ylabel("cosine(s0, sk)")
        ax.set_title(f"Similarity should fall along each chain ({model})", loc="left")
        _legend(ax, narrow)

    return render(caption, draw)


def _legend(ax, narrow: bool) -> None:
    if narrow:  # below the plot: inside it would cover the data on a small figure
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1, frameon=False)
    else:
        ax.legend(loc="best", framealpha=0.85)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text
