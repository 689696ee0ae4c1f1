"""Run a plan: skip completed stages, re-run stale ones (keeping their old outputs aside), resume the rest.

A stage is marked done only when its command succeeded *and* its output is usable by the next stage
(`output_problem`: records written by a complete synthesis, a saved model, a results file); a stage
that produced nothing usable fails there, naming itself, instead of the next stage failing far from
the cause.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synthembed import __version__
from synthembed.errors import SynthEmbedError
from synthembed.io.atomic import atomic_write_json
from synthembed.pipeline.config import PipelineConfig
from synthembed.pipeline.plan import MARKER, PlannedStage, build_plan

logger = logging.getLogger(__name__)


class StageFailed(SynthEmbedError):
    """A stage's command returned an error; earlier stages' outputs are kept."""


def _set_aside(stage: PlannedStage) -> Path | None:
    """Move a stale stage's folder aside (never delete what was written) so the stage starts clean."""
    if not stage.stage_dir.exists():
        return None
    old = stage.stage_dir.with_name(f"{stage.stage_dir.name}.stale-{int(time.time())}")
    stage.stage_dir.rename(old)
    return old


def run_stage(stage: PlannedStage) -> float:
    """Run one stage's subcommand in this process; returns its wall time in seconds."""
    from synthembed.cli import main as cli_main

    stage.stage_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    code = cli_main(stage.argv)
    elapsed = time.perf_counter() - started
    if code != 0:
        raise StageFailed(f"stage {stage.config.name!r} failed (exit {code}): {stage.command_line}")
    problem = output_problem(stage)
    if problem is not None:
        raise StageFailed(f"stage {stage.config.name!r} produced nothing usable: {problem} ({stage.command_line})")
    atomic_write_json(
        stage.stage_dir / MARKER,
        {
            "hash": stage.hash,
            "command": stage.command_line,
            "elapsed_s": round(elapsed, 2),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "synthembed": __version__,
        },
    )
    return elapsed


def output_problem(stage: PlannedStage) -> str | None:
    """Why a finished stage's output cannot feed the next stage, or None when it can."""
    from synthembed.synthesis.records import read_manifest

    command, output = stage.config.command, stage.output
    if command.startswith("synthesize"):
        try:
            manifest = read_manifest(output)
        except (OSError, ValueError) as exc:
            return f"{output}/manifest.json unreadable ({exc})"
        if manifest is None:
            return f"no manifest.json in {output}"
        if manifest.get("complete") is not True:
            return f"the synthesis in {output} is not complete"
        counts = manifest.get("counts", {})
        if not counts.get("written"):
            dropped = ", ".join(f"{n} {r}" for r, n in (counts.get("dropped") or {}).items()) or "no rows"
            return f"0 records written in {output} (dropped: {dropped})"
    elif command in ("train", "refine"):
        if not (output / "modules.json").is_file():
            return f"no saved model (modules.json) in {output}"
    elif not output.is_file():
        return f"{output} was not written"
    return None


def with_retry_errors(stage: PlannedStage) -> PlannedStage:
    """The stage with ``--retry-errors`` added when its command takes it (LLM synthesis through the runner)."""
    if stage.config.command in ("synthesize syncse", "synthesize graded") and "--retry-errors" not in stage.argv:
        return replace(stage, argv=[*stage.argv, "--retry-errors"])
    return stage


def run_pipeline(
    config: PipelineConfig, *, only: set[str] | None = None, retry_errors: bool = False
) -> dict[str, Any]:
    """Execute every stage in order (or only those named); returns the run summary written to run.json."""
    plan = build_plan(config)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "name": config.name,
        "config": str(config.source) if config.source else None,
        "config_contents": _config_dict(config),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stages": [],
    }
    total_started = time.perf_counter()
    for stage in plan:
        entry: dict[str, Any] = {"name": stage.config.name, "command": stage.command_line, "hash": stage.hash}
        if only is not None and stage.config.name not in only:
            entry["status"] = "not selected"
        elif stage.status == "done":
            print(f"[{stage.config.name}] complete, skipped (same config hash {stage.hash[:10]})")
            entry["status"] = "cached"
        else:
            if stage.status == "stale":
                old = _set_aside(stage)
                print(f"[{stage.config.name}] config changed: previous output kept at {old}")
            if retry_errors:  # not part of the stage's hash: the same stage, with its failed rows re-sent
                stage = with_retry_errors(stage)
            print(f"[{stage.config.name}] running: {stage.command_line}")
            entry["elapsed_s"] = round(run_stage(stage), 2)
            entry["status"] = "ran"
        summary["stages"].append(entry)
        _write_summary(config, summary, total_started)
    return summary


def _config_dict(config: PipelineConfig) -> dict[str, Any]:
    data = asdict(config)
    data["output_dir"] = str(config.output_dir)
    data["source"] = str(config.source) if config.source else None
    return data


def _write_summary(config: PipelineConfig, summary: dict[str, Any], started: float) -> None:
    summary["elapsed_s"] = round(time.perf_counter() - started, 2)
    atomic_write_json(Path(config.output_dir) / "run.json", summary)
