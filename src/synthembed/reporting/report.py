"""Write `report.html` (one self-contained page) and `report.md` for one or several run directories.

    synthembed report runs/demo                    # also written at the end of every `synthembed run`
    synthembed report runs/a runs/b -o both.html   # several runs side by side

What the page holds, in order: warnings from the audits; every model the run produced with its score per
task, the change from the base model and a paired bootstrap 95% interval (evaluation.compare); the dev
curve against the base model's score; the synthesized data (kept/dropped counts, drop reasons, a few kept
and dropped rows, similarity plots); every check with its threshold; the stages and what they cost.
"""

from __future__ import annotations

import base64
import datetime as _dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthembed.evaluation.compare import Change, main_score, paired_change
from synthembed.io.atomic import atomic_write_text
from synthembed.reporting import audits, plots
from synthembed.reporting.collect import RunContents, StageInfo, argument, collect_run, read_dropped, read_records

logger = logging.getLogger(__name__)

SAMPLE = 400  # synthesized rows embedded for the similarity plots and audits
EXAMPLES = 3  # kept and dropped rows shown per synthesis stage
STS_TEST_AVERAGE = "STS avg (test)"
TEXT_LIMIT = 240
METHODS = {"syncse": "SynCSE triplets", "chains": "ranked chains", "graded": "graded negatives (MGH)"}


def task_label(task: str, result: dict[str, Any]) -> str:
    split = result.get("split")
    return f"{task} ({split})" if split else task


def model_label(contents: RunContents, model: str, pooling: str | None = None) -> str:
    """A short name for an evaluated model: the stage that wrote it, or the reference as given, plus the
    pooling when the evaluation replaced it (one backbone scored with several poolings stays apart)."""
    path = Path(model)
    produced = {s.name for s in contents.stages if s.kind in ("train", "refine")}
    inside = path.parent.resolve() == contents.run_dir.resolve() or (
        path.name in produced and path.parent.name == contents.run_dir.name
    )
    name = path.name if inside else model
    return f"{name} ({pooling})" if pooling else name


@dataclass
class ModelRow:
    """One evaluated model: its results per column (task and split) and its change from the base."""

    label: str
    stage: str | None  # the train/refine stage that produced it (None for the base or an outside model)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: dict[str, Change] = field(default_factory=dict)
    average: float | None = None
    is_base: bool = False

    def score(self, column: str) -> float | None:
        if column == STS_TEST_AVERAGE:
            return self.average
        result = self.results.get(column)
        return main_score(result) if result else None


@dataclass
class SynthView:
    stage: StageInfo
    method: str
    kept: int
    dropped: dict[str, int]
    usage: dict[str, Any]
    kept_rows: list[list[str]]
    kept_header: list[str]
    dropped_rows: list[list[str]]
    figures: list[plots.Figure | plots.Skipped] = field(default_factory=list)


@dataclass
class RunView:
    """Everything the template shows for one run."""

    name: str
    run_dir: Path
    stages: list[StageInfo]
    rows: list[ModelRow]
    columns: list[str]
    base: str | None
    notes: list[str]
    audits: list[audits.Audit]
    score_figures: list[plots.Figure | plots.Skipped]
    training_figures: list[plots.Figure | plots.Skipped]
    data_figures: list[plots.Figure | plots.Skipped]
    synth: list[SynthView]
    similarity_model: str | None

    @property
    def headline(self) -> str | None:
        return headline(self.rows)

    @property
    def warnings(self) -> list[audits.Audit]:
        return [a for a in self.audits if a.fired]


# ---------------------------------------------------------------- scores


def base_reference(contents: RunContents) -> str | None:
    """The model the run starts from: the --model of its first train/refine stage."""
    for stage in contents.stages:
        if stage.kind in ("train", "refine"):
            return argument(stage.command, "--model")
    return None


def model_rows(contents: RunContents) -> tuple[list[ModelRow], str | None, list[str]]:
    """Evaluated models in pipeline order (base, trained, refined, others) with changes from the base."""
    produced = {s.name: s for s in contents.stages if s.kind in ("train", "refine")}
    rows: dict[str, ModelRow] = {}
    for results in contents.results.values():
        pooling = (results.get("config") or {}).get("pooling")
        label = model_label(contents, str(results.get("model", "?")), pooling)
        row = rows.setdefault(label, ModelRow(label, label if label in produced else None))
        for task, result in results.get("tasks", {}).items():
            if main_score(result) is not None:
                row.results[task_label(task, result)] = result
        average = _test_average(results)
        if average is not None:
            row.average = average
    notes: list[str] = []
    reference = base_reference(contents)
    base_label = model_label(contents, reference) if reference else None
    if base_label not in rows:
        base_label = next((label for label, row in rows.items() if row.stage is None), next(iter(rows), None))
    order = [base_label] if base_label else []
    order += [name for name in produced if name in rows and name != base_label]
    order += [label for label in rows if label not in order]
    ordered = [rows[label] for label in order]
    for name in produced:
        if name not in rows:
            notes.append(f"The model written by stage {name} was not evaluated (add an evaluate stage for it to see its effect).")
    if base_label:
        base = rows[base_label]
        base.is_base = True
        for row in ordered:
            if row.is_base:
                continue
            for column, result in row.results.items():
                if column in base.results:
                    try:
                        row.changes[column] = paired_change(column, base.results[column], result)
                    except ValueError as exc:
                        notes.append(f"{row.label}, {column}: no interval ({exc}).")
    if any(not c.has_interval for row in ordered for c in row.changes.values()):
        notes.append("Changes without an interval come from results.json files written before per-pair outcomes "
                     "were stored; re-run those evaluate stages to get one.")
    return ordered, base_label, notes


def _test_average(results: dict[str, Any]) -> float | None:
    """The STS average of an evaluation that ran on test splits only (dev averages are not the paper's)."""
    tasks = results.get("tasks", {})
    if results.get("average") is None or not tasks or any(t.get("split") != "test" for t in tasks.values()):
        return None
    return float(results["average"])


def columns_of(rows: Sequence[ModelRow]) -> list[str]:
    columns = sorted({c for row in rows for c in row.results}, key=lambda c: (not c.endswith("(test)"), c))  # test first
    if any(row.average is not None for row in rows):
        columns.append(STS_TEST_AVERAGE)
    return columns


def average_notes(contents: RunContents) -> list[str]:
    notes = []
    for results in contents.results.values():
        if _test_average(results) is not None:
            over = results.get("average_over") or []
            notes.append(f"{STS_TEST_AVERAGE}: {len(over)} of 7 tasks: {', '.join(over)} (no interval: tasks are resampled separately).")
    return sorted(set(notes))


def signed(value: float) -> str:
    """'+1.25', '-0.30', and '0.00' for anything that rounds to zero (never '-0.00')."""
    text = f"{value:+.2f}"
    return "0.00" if text in ("+0.00", "-0.00") else text


def change_text(change: Change | None) -> str:
    """'+1.25 [+0.30, +2.10]' (with ' n.s.' when the interval covers zero)."""
    if change is None:
        return ""
    if not change.has_interval:
        return signed(change.delta)
    text = f"{signed(change.delta)} [{signed(change.low)}, {signed(change.high)}]"
    return text + (" n.s." if change.covers_zero else "")


def headline(rows: Sequence[ModelRow]) -> str | None:
    """One sentence on the last model the run produced against the base, on the test columns."""
    base = next((r for r in rows if r.is_base), None)
    final = next((r for r in reversed(rows) if r.stage is not None and r.changes), None)
    if base is None or final is None:
        return None
    columns = [c for c in final.changes if c.endswith("(test)")] or list(final.changes)
    parts = []
    for column in columns:
        change = final.changes[column]
        verdict = ("no interval" if not change.has_interval else "not distinguishable from noise" if change.covers_zero
                   else "better" if change.delta > 0 else "worse")
        parts.append(f"{column} {change.base:.2f} → {change.other:.2f} ({change_text(change).removesuffix(' n.s.')}: {verdict})")
    return f"The final model {final.label} against the base model {base.label}: " + "; ".join(parts) + "."


# ---------------------------------------------------------------- training


def metric_words(key: str) -> str:
    """`eval_dev_mean_spearman` -> 'mean dev Spearman x100' (the reader's words, not the trainer's key)."""
    names = {"stsb": "STS-B dev", "sickr": "SICK-R trial", "mean": "mean dev"}
    parts = key.removeprefix("eval_").split("_")
    if len(parts) >= 3 and parts[-1] == "spearman":
        return f"{names.get(parts[-2], parts[-2])} Spearman x100"
    return key.removeprefix("eval_").replace("_", " ")


def _curve_metric(points: list[dict[str, float]]) -> str | None:
    keys = [k for k in points[0] if k not in ("step", "epoch")]
    return next((k for k in keys if k.endswith("mean_spearman")), None) or next((k for k in keys if "spearman" in k), None)


def training_view(contents: RunContents, base_label: str | None) -> tuple[list[plots.Figure | plots.Skipped], list[audits.Audit]]:
    segments: list[tuple[str, list[tuple[float, float]]]] = []
    metric = None
    for stage in contents.stages:
        points = contents.dev_curves.get(stage.name)
        if not points:
            continue
        metric = metric or _curve_metric(points)
        if metric is None:
            continue
        curve = [(p["step"], p[metric]) for p in points if metric in p and "step" in p]
        if curve:
            segments.append((f"{stage.name} ({stage.kind} stage)", curve))
    words = metric_words(metric or "")
    caption = (f"Dev score ({words}) during training, at every evaluation step. Each stage starts where the previous one "
               "ended; the dashed line is the base model's score at step 0.")
    if not segments:
        return [plots.Skipped(caption, "No training stage wrote a dev curve (train with a dev set to get one).")], []
    first = segments[0][1]
    reference = (f"base model ({base_label or 'start'}) at step 0", first[0][1]) if first[0][0] == 0 else None
    figure = plots.dev_curves(caption, segments, reference, words)
    checks = [
        audits.dev_never_beats_base(name.split(" ")[0], curve, reference[1] if reference else None, reference[0] if reference else "")
        for name, curve in segments
    ]
    return [figure], checks


# ---------------------------------------------------------------- synthesized data


def _short(text: Any, limit: int = TEXT_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _example_table(method: str, records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    if method == "chains":
        return ["id", "chain (s0 first)"], [[str(r.get("id", "")), " → ".join(_short(s, 90) for s in r.get("sentences", []))] for r in records]
    if method == "graded":
        return ["id", "query", "positive", "negatives (level: text)"], [
            [str(r.get("id", "")), _short(r.get("query", "")), _short(r.get("positive", "")),
             "; ".join(f"{n.get('level', '?')}: {_short(n.get('text', ''))}" for n in r.get("negatives", []) if isinstance(n, dict))]
            for r in records
        ]
    return ["id", "anchor", "positive", "negative"], [
        [str(r.get("id", "")), _short(r.get("anchor", "")), _short(r.get("positive", "")),
         _short(r["negative"] if isinstance(r.get("negative"), str) else (r.get("negative") or [""])[0])]
        for r in records
    ]


def _dropped_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for row in rows:
        raw = row.get("raw")
        if isinstance(raw, dict):
            generated = "; ".join(f"{k}: {_short(v)}" for k, v in raw.items() if isinstance(v, (str, list)))
        else:
            generated = _short(raw or "")
        source = (row.get("meta") or {}).get("source", "")
        reason = str(row.get("reason", "")).replace("_", " ") + (f" ({row['detail']})" if row.get("detail") else "")
        out.append([str(row.get("id", "")), reason, _short(generated, 360) or "(nothing parsed)", str(source)])
    return out


def synthesis_view(contents: RunContents, model: Any, model_name: str | None) -> tuple[list[SynthView], list[audits.Audit], list[plots.Figure | plots.Skipped]]:
    from synthembed.reporting import similarity

    views: list[SynthView] = []
    checks: list[audits.Audit] = []
    counts: dict[str, dict[str, int]] = {}
    for stage in contents.stages:
        if stage.kind != "synthesize":
            continue
        method = stage.method or "?"
        manifest = contents.manifests.get(stage.name, {})
        records = read_records(stage.folder, limit=SAMPLE)
        raw_counts = manifest.get("counts", {})
        kept = int(raw_counts.get("written", len(records)))
        dropped = raw_counts.get("dropped", {})
        dropped = {str(k): int(v) for k, v in dropped.items()} if isinstance(dropped, dict) else {"dropped": int(dropped or 0)}
        header, kept_rows = _example_table(method, records[:EXAMPLES])
        view = SynthView(stage, method, kept, dropped, manifest.get("usage", {}), kept_rows, header,
                         _dropped_table(read_dropped(stage.folder, limit=EXAMPLES)))
        counts[stage.name] = {"kept": kept, **dropped}
        checks.append(audits.dropped_rows(stage.name, kept, dropped))
        if model is not None and records:
            caption_model = model_name or "the model"
            if method == "chains":
                chains = similarity.chain_similarities(model, records)
                taus = [t for t in (similarity.kendall_with_position(c) for c in chains) if t == t]
                checks.append(audits.chains_not_falling(stage.name, taus, caption_model))
                view.figures.append(plots.chain_profiles(
                    f"{stage.name}: similarity of each chain sentence to its first sentence, under {caption_model}. "
                    "It should fall from left to right.", chains, caption_model))
            elif method == "graded":
                pos, neg, groups = similarity.graded_pairs(model, records)
                checks.append(audits.negatives_closer(stage.name, pos, neg, caption_model, label="graded negative"))
                view.figures.append(plots.groups_strip(
                    f"{stage.name}: cosine of the positive and of each level's negatives to the query, under {caption_model}. "
                    "The positive should be highest and the levels should fall in order.", groups, caption_model))
            else:
                groups = similarity.triplet_similarities(model, records)
                if groups:
                    checks.append(audits.negatives_closer(stage.name, groups["positive"], groups["hard negative"], caption_model, label="hard negative"))
                    view.figures.append(plots.pair_scatter(
                        f"{stage.name}: one dot per kept row, under {caption_model}. Below the diagonal the positive is closer "
                        "to the anchor than the hard negative, as training assumes; red dots above it invert the signal.",
                        groups["positive"], groups["hard negative"], caption_model))
        views.append(view)
    figures: list[plots.Figure | plots.Skipped] = []
    if counts:
        figures.append(plots.drop_reasons("Rows kept (green) and dropped by the filters (red, by reason), per synthesis stage.", counts))
    return views, checks, figures


def similarity_model(contents: RunContents, with_model_plots: bool) -> tuple[Any, str | None, list[str]]:
    """The base model (what the synthesized data trains): the data audits must not depend on training."""
    if not with_model_plots or not any(s.kind == "synthesize" for s in contents.stages):
        return None, None, []
    from synthembed.models.encoder import load_encoder

    candidates = [base_reference(contents)]
    candidates += [str(s.folder) for s in reversed(contents.stages) if s.kind in ("train", "refine") and (s.folder / "modules.json").is_file()]
    for reference in [c for c in candidates if c]:
        try:
            return load_encoder(reference), model_label(contents, reference), []
        except Exception as exc:  # any load failure: try the next model, and say so
            note = f"Could not load {reference} for the similarity plots ({type(exc).__name__}: {exc})."
            logger.warning(note)
    return None, None, ["No model could be loaded: the similarity plots and audits were skipped."]


# ---------------------------------------------------------------- the run, the page


def build_view(run_dir: str | Path, *, with_model_plots: bool = True) -> RunView:
    contents = collect_run(run_dir)
    rows, base, notes = model_rows(contents)
    columns = columns_of(rows)
    notes = average_notes(contents) + notes
    effects = [
        plots.Effect(f"{column}: {row.label}", change.delta, change.low, change.high)
        for column in columns for row in rows if (change := row.changes.get(column)) is not None
    ]
    score_figures = [plots.effects(
        f"Change from {base} per task and model (points x100). Dots: the change; bars: its paired bootstrap "
        "95% interval; grey: the interval covers 0, so the test set cannot tell the two models apart.", effects, str(base))]
    training_figures, training_checks = training_view(contents, base)
    model, model_name, model_notes = similarity_model(contents, with_model_plots)
    synth, synth_checks, data_figures = synthesis_view(contents, model, model_name)
    return RunView(
        name=Path(run_dir).name, run_dir=Path(run_dir), stages=contents.stages, rows=rows, columns=columns, base=base,
        notes=notes + model_notes, audits=synth_checks + training_checks, score_figures=score_figures,
        training_figures=training_figures, data_figures=data_figures, synth=synth, similarity_model=model_name,
    )


def markdown(views: Sequence[RunView]) -> str:
    """report.md: the warnings and the tables, for terminals and pull requests."""
    title = views[0].name if len(views) == 1 else ", ".join(v.name for v in views)
    lines = [f"# Run report: {title}", ""]
    warnings = [(v, a) for v in views for a in v.warnings]
    if warnings:
        lines += ["## Warnings", ""] + [f"- **{a.check}** ({_scope(views, v, a.subject)}): {a.message}" for v, a in warnings] + [""]
    for view in views:
        heading = "##" if len(views) == 1 else "###"
        if len(views) > 1:
            lines += [f"## {view.name}", ""]
        if view.headline:
            lines += [f"**In short:** {view.headline}", ""]
        if view.columns:
            lines += [f"{heading} Scores (x100; change from {view.base} with paired bootstrap 95% interval; n.s. = interval covers 0)", ""]
            lines.append("| model | " + " | ".join(view.columns) + " |")
            lines.append("|---|" + "---:|" * len(view.columns))
            for row in view.rows:
                cells = []
                for column in view.columns:
                    score = row.score(column)
                    change = change_text(row.changes.get(column))
                    cells.append("—" if score is None else f"{score:.2f}" + (f" ({change})" if change else ""))
                lines.append(f"| {row.label}{' (base)' if row.is_base else ''} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [f"{note}" for note in view.notes] + ([""] if view.notes else [])
        if view.synth:
            lines += [f"{heading} Synthesis", "", "| stage | kept | dropped (by reason) | LLM usage |", "|---|---:|---|---|"]
            for synth in view.synth:
                dropped = ", ".join(f"{k} {v}" for k, v in sorted(synth.dropped.items())) or "none"
                usage = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in synth.usage.items() if isinstance(v, (int, float)))
                lines.append(f"| {synth.stage.name} | {synth.kept} | {dropped} | {usage} |")
            lines.append("")
        if view.audits:
            lines += [f"{heading} Checks", "", "| check | stage | result | threshold |", "|---|---|---|---|"]
            for audit in view.audits:
                lines.append(f"| {audit.check} | {audit.subject} | {'WARNING: ' if audit.fired else 'ok: '}{audit.message} | {audit.threshold} |")
            lines.append("")
        lines += [f"{heading} Stages", "", "| stage | wall time (s) | command |", "|---|---:|---|"]
        for stage in view.stages:
            elapsed = f"{stage.elapsed_s:.1f}" if stage.elapsed_s is not None else "—"
            lines.append(f"| {stage.name} | {elapsed} | `{stage.command}` |")
        lines.append("")
    return "\n".join(lines)


def _scope(views: Sequence[RunView], view: RunView, subject: str) -> str:
    return subject if len(views) == 1 else f"{view.name} / {subject}"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(views: Sequence[RunView]) -> str:
    """The page, from the packaged Jinja2 template; images inline, so the file works offline."""
    import jinja2

    from synthembed import __version__

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("synthembed", "resources/templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["data_uri"] = _data_uri
    environment.filters["change"] = change_text
    environment.globals.update(Figure=plots.Figure, methods=METHODS, STS_TEST_AVERAGE=STS_TEST_AVERAGE)
    environment.tests["figure"] = lambda value: isinstance(value, plots.Figure)
    template = environment.get_template("report.html.j2")
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return template.render(views=views, version=__version__, generated=generated, scope=_scope)


def write_report(run_dirs: str | Path | Sequence[str | Path], *, output: str | Path | None = None, with_model_plots: bool = True) -> Path:
    """Build report.html and report.md for one run (in it, by default) or several (side by side); returns the HTML path."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ValueError("write_report needs at least one run directory")
    views = [build_view(run_dir, with_model_plots=with_model_plots) for run_dir in run_dirs]
    html_path = Path(output) if output is not None else Path(run_dirs[0]) / "report.html"
    atomic_write_text(html_path.with_suffix(".md"), markdown(views))
    atomic_write_text(html_path, render_html(views))
    return html_path
