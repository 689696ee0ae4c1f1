"""Read what a run directory holds: stage markers, evaluation results, dev curves, synthesized records.

Everything in the report comes from these files; nothing is recomputed except the similarity
histograms, which need the final model.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthembed.pipeline.plan import MARKER, read_marker
from synthembed.synthesis.records import record_files


@dataclass
class StageInfo:
    name: str
    command: str
    folder: Path
    elapsed_s: float | None
    kind: str  # "synthesize", "train", "refine", "evaluate"
    method: str | None = None  # syncse / chains / graded for synthesis stages


@dataclass
class RunContents:
    run_dir: Path
    stages: list[StageInfo] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # evaluate stage -> results.json
    dev_curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # train stage -> points
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # synth stage -> manifest


def _stage_order(run_dir: Path) -> list[str]:
    try:
        summary = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        return [s["name"] for s in summary.get("stages", [])]
    except (OSError, ValueError, KeyError):
        markers = [p / MARKER for p in run_dir.iterdir() if (p / MARKER).is_file()]
        return [m.parent.name for m in sorted(markers, key=lambda m: m.stat().st_mtime_ns)]


def collect_run(run_dir: str | Path) -> RunContents:
    """Gather the run's stage outputs in pipeline order (stages that never finished are left out)."""
    run_dir = Path(run_dir)
    contents = RunContents(run_dir)
    for name in _stage_order(run_dir):
        folder = run_dir / name
        marker = read_marker(folder)
        if marker is None:
            continue
        words = _split(marker.get("command", ""))
        kind = words[1] if len(words) > 1 else "?"
        method = words[2] if kind == "synthesize" and len(words) > 2 else None
        info = StageInfo(name, marker.get("command", ""), folder, marker.get("elapsed_s"), kind, method)
        contents.stages.append(info)
        if kind == "evaluate" and (folder / "results.json").is_file():
            contents.results[name] = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        elif kind in ("train", "refine"):
            curve = read_dev_curve(folder)
            if curve:
                contents.dev_curves[name] = curve
        elif kind == "synthesize":
            manifest = folder / "manifest.json"
            if manifest.is_file():
                contents.manifests[name] = json.loads(manifest.read_text(encoding="utf-8"))
    return contents


def read_dev_curve(folder: Path) -> list[dict[str, float]]:
    """Dev-set points of a training run: dev_curve.json if written, else the trainer's log history."""
    tsv = folder / "dev_curve.tsv"  # written by synthembed.training (step, epoch, eval_* columns)
    if tsv.is_file():
        rows = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(rows) > 1:
            return [{key: float(value) for key, value in zip(rows[0], row) if value.strip()} for row in rows[1:]]
    curve_file = folder / "dev_curve.json"
    if curve_file.is_file():
        data = json.loads(curve_file.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else data.get("points", [])
    states = sorted(folder.glob("**/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return []
    history = json.loads(states[-1].read_text(encoding="utf-8")).get("log_history", [])
    points = []
    for entry in history:
        metrics = {k: v for k, v in entry.items() if k.startswith("eval_") and "spearman" in k}
        if metrics and "step" in entry:
            points.append({"step": entry["step"], **metrics})
    return points


def read_records(folder: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Synthesized records of a stage (kept records only, never the dropped ones)."""
    records: list[dict[str, Any]] = []
    for path in record_files(folder):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "id" in record:
                    records.append(record)
                    if limit is not None and len(records) >= limit:
                        return records
    return records


def read_dropped(folder: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows the synthesis filters dropped (``dropped/*.jsonl``: id, reason, detail, raw), in file order."""
    rows: list[dict[str, Any]] = []
    for path in sorted((folder / "dropped").glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "reason" in row:
                    rows.append(row)
                    if limit is not None and len(rows) >= limit:
                        return rows
    return rows


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote in a hand-written marker
        return command.split()


def argument(command: str, flag: str) -> str | None:
    """The value of `--flag VALUE` (or `--flag=VALUE`) in a stage's command line, or None."""
    words = _split(command)
    for index, word in enumerate(words):
        if word == flag and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(flag + "="):
            return word[len(flag) + 1 :]
    return None


def positional_model(command: str) -> str | None:
    """The MODEL of a `synthembed evaluate MODEL ...` command line."""
    words = _split(command)
    return words[2] if len(words) > 2 and words[1] == "evaluate" and not words[2].startswith("-") else None
