"""Write `report.html` (plots) and `report.md` (summary tables) for a run directory.

    synthembed report runs/demo        # also written at the end of every `synthembed run`
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from typing import Any

from synthembed.io.atomic import atomic_write_text
from synthembed.reporting import plots
from synthembed.reporting.collect import RunContents, collect_run, read_records

logger = logging.getLogger(__name__)

MAIN_SCORE_KEYS = ("spearman", "ndcg@10", "ndcg_at_10", "map", "mrr@10", "main_score")
HISTOGRAM_SAMPLE = 400


def main_score(result: dict[str, Any]) -> float | None:
    """The headline number of one task's result (Spearman for STS, nDCG@10 for retrieval, MAP for reranking)."""
    for key in MAIN_SCORE_KEYS:
        if isinstance(result.get(key), (int, float)):
            return float(result[key])
    return None


def task_label(task: str, result: dict[str, Any]) -> str:
    split = result.get("split")
    return f"{task} ({split})" if split else task


STS_TEST_AVERAGE = "STS avg (test)"


def model_label(contents: RunContents, model: str, pooling: str | None = None) -> str:
    """A short name for an evaluated model: the stage that wrote it, or the reference as given, plus the
    pooling when the evaluation replaced it (one backbone scored with several poolings stays apart)."""
    path = Path(model)
    name = path.name if path.parent.resolve() == contents.run_dir.resolve() else model
    return f"{name} ({pooling})" if pooling else name


def score_table(contents: RunContents) -> dict[str, dict[str, float]]:
    """evaluated model -> {task (split): main score}; several evaluate stages of one model merge.

    A test-split evaluation of several STS tasks (e.g. ``sts7``) adds its average as `STS_TEST_AVERAGE`
    (the tasks it covers are listed by `average_notes`).
    """
    table: dict[str, dict[str, float]] = {}
    for stage, results in contents.results.items():
        pooling = (results.get("config") or {}).get("pooling")
        row = table.setdefault(model_label(contents, str(results.get("model", stage)), pooling), {})
        for task, result in results.get("tasks", {}).items():
            score = main_score(result)
            if score is not None:
                row[task_label(task, result)] = score
        average = _test_average(results)
        if average is not None:
            row[STS_TEST_AVERAGE] = average
    return table


def _test_average(results: dict[str, Any]) -> float | None:
    """The STS average of an evaluation that ran on test splits only (dev averages are not the paper's)."""
    tasks = results.get("tasks", {})
    if results.get("average") is None or not tasks or any(t.get("split") != "test" for t in tasks.values()):
        return None
    return float(results["average"])


def average_notes(contents: RunContents) -> list[str]:
    """Which STS test sets each `STS_TEST_AVERAGE` covers (the seven only where their files are present)."""
    notes = []
    for results in contents.results.values():
        if _test_average(results) is not None:
            over = results.get("average_over") or []
            notes.append(f"{len(over)} of 7 tasks: {', '.join(over)}")
    return sorted(set(notes))


def final_model_path(contents: RunContents) -> Path | None:
    """The last model a train/refine stage wrote (what the histograms are computed under)."""
    for stage in reversed(contents.stages):
        if stage.kind in ("train", "refine") and (stage.folder / "modules.json").is_file():
            return stage.folder
    return None


def markdown_summary(contents: RunContents, table: dict[str, dict[str, float]]) -> str:
    lines = [f"# Run report: {contents.run_dir.name}", ""]
    tasks = sorted({task for row in table.values() for task in row} - {STS_TEST_AVERAGE})
    if any(STS_TEST_AVERAGE in row for row in table.values()):
        tasks.append(STS_TEST_AVERAGE)
    if tasks:
        lines += ["## Scores (Spearman x100 for STS; nDCG@10 for retrieval; MAP for reranking)", ""]
        lines.append("| model | " + " | ".join(tasks) + " |")
        lines.append("|---|" + "---:|" * len(tasks))
        for model, row in table.items():
            cells = [f"{row[task]:.2f}" if task in row else "—" for task in tasks]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
        notes = average_notes(contents)
        lines += [f"{STS_TEST_AVERAGE}: {note}." for note in notes]
        if notes:
            lines.append("")
    if contents.manifests:
        lines += ["## Synthesis", "", "| stage | kept | dropped (by reason) | LLM usage |", "|---|---:|---|---|"]
        for stage, manifest in contents.manifests.items():
            counts = manifest.get("counts", {})
            dropped = counts.get("dropped", {})
            dropped_text = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) if isinstance(dropped, dict) else str(dropped)
            usage = manifest.get("usage", {})
            usage_text = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in usage.items())
            lines.append(f"| {stage} | {counts.get('written', '—')} | {dropped_text or 'none'} | {usage_text} |")
        lines.append("")
    lines += ["## Stages", "", "| stage | wall time (s) | command |", "|---|---:|---|"]
    for stage in contents.stages:
        elapsed = f"{stage.elapsed_s:.1f}" if stage.elapsed_s is not None else "—"
        lines.append(f"| {stage.name} | {elapsed} | `{stage.command}` |")
    return "\n".join(lines) + "\n"


def _figures(contents: RunContents, table: dict[str, dict[str, float]], model_path: Path | None) -> list[tuple[str, bytes]]:
    figures: list[tuple[str, bytes]] = []
    if table:
        figures.append(("Scores by task and evaluation stage", plots.grouped_bars(table, "Per-task scores by model", "score")))
    curves = {}
    for stage, points in contents.dev_curves.items():
        metric = next((k for k in points[0] if k.endswith("mean_spearman")), None) or next(
            (k for k in points[0] if k != "step"), None
        )
        if metric:
            curves[f"{stage}: {metric}"] = [(p["step"], p[metric]) for p in points if metric in p]
    if curves:
        figures.append(("Development-set curve during training", plots.lines(curves, "Dev curve", "step", "Spearman")))
    synth_stages = [s for s in contents.stages if s.kind == "synthesize"]
    if model_path is None or not synth_stages:
        return figures
    from synthembed.models.encoder import load_encoder
    from synthembed.reporting import similarity

    model = load_encoder(str(model_path))
    for stage in synth_stages:
        records = read_records(stage.folder, limit=HISTOGRAM_SAMPLE)
        if not records:
            continue
        if stage.method == "chains":
            taus, means = similarity.chain_agreement(model, records)
            if taus:
                figures.append((f"{stage.name}: chain-order agreement (Kendall tau of similarity to s0 vs position, final model)",
                                plots.histograms({"chains": taus}, "Chain-order agreement", "Kendall tau")))
                figures.append((f"{stage.name}: mean similarity to s0 by chain position (final model)",
                                plots.lines({"mean cos(s0, sk)": means}, "Similarity along the chain", "position k", "cosine")))
            continue
        groups = similarity.graded_similarities(model, records) if stage.method == "graded" else similarity.triplet_similarities(model, records)
        if groups:
            figures.append((f"{stage.name}: cosine similarity to the anchor under the final model",
                            plots.histograms(groups, f"{stage.name}", "cosine similarity")))
    return figures


def write_report(run_dir: str | Path, *, with_model_plots: bool = True) -> Path:
    """Build report.md and report.html in `run_dir`; returns the HTML path."""
    contents = collect_run(run_dir)
    table = score_table(contents)
    summary = markdown_summary(contents, table)
    model_path = final_model_path(contents) if with_model_plots else None
    figures = _figures(contents, table, model_path)
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "report.md", summary)
    body = [f"<h1>SynthEmbed run: {html.escape(run_dir.name)}</h1>"]
    if model_path is not None:
        body.append(f"<p>Histograms are computed under the final model <code>{html.escape(str(model_path))}</code>.</p>")
    for caption, png in figures:
        data = base64.b64encode(png).decode("ascii")
        body.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    body.append("<h2>Summary</h2><pre>" + html.escape(summary) + "</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>SynthEmbed report</title>"
            "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto}figure{margin:1.5em 0}"
            "img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    atomic_write_text(run_dir / "report.html", page)
    return run_dir / "report.html"
