"""Turn a PipelineConfig into a plan: each stage's resolved command line, output path, hash and status.

A stage's hash covers its command, resolved arguments and the hashes of the stages it reads, so a
change anywhere upstream marks everything downstream as stale, and an unchanged stage is skipped.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from synthembed.pipeline.config import COMMANDS, REFERENCE, PipelineConfig, StageConfig

MARKER = ".synthembed-stage.json"
Status = Literal["done", "pending", "stale"]

# Commands that take --seed / --data-dir; the pipeline fills them from the top level unless a stage sets them.
SEEDED = {"synthesize syncse", "synthesize chains", "synthesize graded", "train", "refine"}
USES_DATA_DIR = {"train", "refine", "evaluate"}


@dataclass
class PlannedStage:
    """One stage, ready to run."""

    config: StageConfig
    stage_dir: Path
    output: Path
    argv: list[str]
    hash: str
    status: Status

    @property
    def command_line(self) -> str:
        return "synthembed " + " ".join(shlex.quote(a) for a in self.argv)


def stage_output(config: PipelineConfig, stage: StageConfig) -> Path:
    """Where a stage writes: its folder, or results.json inside it for file-output commands."""
    stage_dir = config.output_dir / stage.name
    return stage_dir / "results.json" if COMMANDS[stage.command] == "file" else stage_dir


def _resolve(value: Any, outputs: dict[str, Path]) -> Any:
    if isinstance(value, list):
        return [_resolve(v, outputs) for v in value]
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: str(outputs[m.group(1)]), value)
    return value


def _flags(args: dict[str, Any]) -> list[str]:
    """YAML args -> CLI flags: lists repeat their items after one flag, True is a bare flag, None/False omitted."""
    argv: list[str] = []
    for key, value in args.items():
        flag = "--" + str(key).replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            argv.append(flag)
            argv.extend(str(v) for v in value)
        elif isinstance(value, dict):
            argv.extend([flag, json.dumps(value, sort_keys=True)])
        else:
            argv.extend([flag, str(value)])
    return argv


def read_marker(stage_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((stage_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def build_plan(config: PipelineConfig) -> list[PlannedStage]:
    """Resolve references, build each stage's argv and hash, and read what is already complete."""
    outputs: dict[str, Path] = {}
    hashes: dict[str, str] = {}
    plan: list[PlannedStage] = []
    for stage in config.stages:
        args = {k: _resolve(v, outputs) for k, v in stage.args.items()}
        if stage.command in SEEDED and "seed" not in args:
            args["seed"] = config.seed
        if stage.command in USES_DATA_DIR and "data_dir" not in args and config.data_dir:
            args["data_dir"] = config.data_dir
        positional = [_resolve(p, outputs) for p in stage.positional]
        output = stage_output(config, stage)
        argv = [*stage.command.split(), *positional, *_flags(args), "--output", str(output)]
        identity = {
            "command": stage.command,
            "positional": positional,
            "args": args,
            "upstream": {name: hashes[name] for name in sorted(stage.references())},
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
        stage_dir = config.output_dir / stage.name
        marker = read_marker(stage_dir)
        if marker is None:
            status: Status = "pending"  # never finished: the command resumes from what it wrote
        else:
            status = "done" if marker.get("hash") == digest else "stale"
        plan.append(PlannedStage(stage, stage_dir, output, argv, digest, status))
        outputs[stage.name] = output
        hashes[stage.name] = digest
    return plan


def validate_plan(plan: list[PlannedStage]) -> None:
    """Parse every stage's command line with the real CLI parser, so a misspelt flag fails before anything runs."""
    import contextlib
    import io

    from synthembed.cli import build_parser
    from synthembed.pipeline.config import PipelineConfigError

    parser = build_parser()
    for stage in plan:
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                parser.parse_args(stage.argv)
        except SystemExit:
            message = errors.getvalue().strip().splitlines()
            raise PipelineConfigError(
                f"stage {stage.config.name!r}: {message[-1] if message else 'invalid arguments'} "
                f"(command: {stage.command_line})"
            ) from None
