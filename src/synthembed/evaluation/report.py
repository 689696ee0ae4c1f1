"""Render results.json's dict as a terminal table (one row per task, main metric first)."""

from __future__ import annotations

import math
from typing import Any

# metric columns shown per task kind, in order; the first present is the task's headline figure
_COLUMNS = ("spearman", "ndcg@10", "map", "mrr@10", "recall@100", "main_score")


def format_table(results: dict[str, Any]) -> str:
    """A fixed-width table of task, split, n and metrics, then the STS average and skip notes."""
    rows: list[list[str]] = []
    for name, metrics in results.get("tasks", {}).items():
        cells = [name, str(metrics.get("split", "")), _count(metrics.get("n"))]
        figures = [f"{key} {_number(metrics[key])}" for key in _COLUMNS if key in metrics]
        rows.append([*cells, "  ".join(figures)])
    header = ["task", "split", "n", "metrics (x100)"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [_line(header, widths), _line(["-" * w for w in widths] + ["-" * 14], widths)]
    lines += [_line(r, widths) for r in rows]
    average = results.get("average")
    if average is not None:
        over = results.get("average_over", [])
        lines.append(f"STS average over {len(over)} task(s) ({', '.join(over)}): {_number(average)}")
    if results.get("mteb_sts_average") is not None:
        over = results.get("mteb_sts_average_over", [])
        lines.append(f"MTEB STS average over {len(over)} task(s) ({', '.join(over)}): {_number(results['mteb_sts_average'])}")
        lines.append(f"note: {results.get('averages_note', '')}")
    for name, note in results.get("skipped", {}).items():
        lines.append(f"skipped {name}: {note}")
    return "\n".join(lines)


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells[:3], widths)) + "  " + cells[3]


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.2f}"


def _count(value: Any) -> str:
    return "" if value is None else str(value)
