"""Matplotlib figures for the report, returned as PNG bytes (Agg backend: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def grouped_bars(scores: Mapping[str, Mapping[str, float]], title: str, ylabel: str) -> bytes:
    """Bars per task (x) for each series (e.g. evaluation stage: before / after)."""
    plt = _pyplot()
    series = list(scores)
    tasks = sorted({task for values in scores.values() for task in values})
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(tasks) + 2), 3.6))
    x = np.arange(len(tasks))
    for index, name in enumerate(series):
        values = [scores[name].get(task, np.nan) for task in tasks]
        bars = ax.bar(x + index * width - 0.4 + width / 2, values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, tasks)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)


def histograms(groups: Mapping[str, Sequence[float]], title: str, xlabel: str) -> bytes:
    """Overlaid histograms of several groups of values (e.g. cosine of positives vs negatives)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    values = [v for group in groups.values() for v in group]
    bins = np.linspace(min(values, default=-1.0), max(values, default=1.0), 31)
    for name, group in groups.items():
        if len(group):
            ax.hist(group, bins=bins, alpha=0.5, label=f"{name} (n={len(group)}, mean={np.mean(group):.2f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)


def lines(curves: Mapping[str, Sequence[tuple[float, float]]], title: str, xlabel: str, ylabel: str) -> bytes:
    """One line per named curve of (x, y) points."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)
