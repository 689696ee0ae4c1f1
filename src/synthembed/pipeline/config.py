"""The pipeline config: YAML -> dataclasses, unknown keys rejected, references checked up front."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthembed.errors import SynthEmbedError

# Subcommands a stage may run, and how each one is told where to write.
COMMANDS: dict[str, str] = {
    "synthesize syncse": "dir",
    "synthesize chains": "dir",
    "synthesize graded": "dir",
    "train": "dir",
    "refine": "dir",
    "evaluate": "file",
}
REFERENCE = re.compile(r"\{stage:([A-Za-z0-9_.-]+)\}")
STAGE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class PipelineConfigError(SynthEmbedError):
    """A pipeline config that cannot run; the message names the file and the stage."""


@dataclass
class StageConfig:
    """One step: `command` with `args` (flag -> value) and optional positional arguments."""

    name: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)

    def references(self) -> set[str]:
        """Names of the stages whose outputs this stage reads."""
        found: set[str] = set()
        for value in [*self.positional, *self.args.values()]:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    found.update(REFERENCE.findall(item))
        return found


@dataclass
class PipelineConfig:
    """A whole experiment: where it writes, its seed, and its stages in order."""

    name: str
    output_dir: Path
    stages: list[StageConfig]
    seed: int = 42
    data_dir: str | None = None
    source: Path | None = None

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


_TOP_KEYS = {"name", "output_dir", "seed", "data_dir", "stages"}
_STAGE_KEYS = {"name", "command", "args", "positional"}


def load_pipeline_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML file; relative paths stay relative to the working directory."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{path}: expected a mapping at the top level")
    raw.update(overrides or {})
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise PipelineConfigError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("name", "stages"):
        if key not in raw:
            raise PipelineConfigError(f"{path}: missing required key {key!r}")
    stages = [_parse_stage(path, index, item) for index, item in enumerate(raw["stages"] or [])]
    if not stages:
        raise PipelineConfigError(f"{path}: no stages")
    config = PipelineConfig(
        name=str(raw["name"]),
        output_dir=Path(raw.get("output_dir") or Path("runs") / str(raw["name"])),
        stages=stages,
        seed=int(raw.get("seed", 42)),
        data_dir=raw.get("data_dir"),
        source=path,
    )
    _check_references(path, config)
    return config


def _parse_stage(path: Path, index: int, item: Any) -> StageConfig:
    where = f"{path}: stage {index + 1}"
    if not isinstance(item, dict):
        raise PipelineConfigError(f"{where}: expected a mapping with name, command and args")
    unknown = set(item) - _STAGE_KEYS
    if unknown:
        raise PipelineConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_STAGE_KEYS)}")
    name = item.get("name")
    if not isinstance(name, str) or not STAGE_NAME.match(name):
        raise PipelineConfigError(f"{where}: 'name' must be letters, digits, '_', '-' or '.'")
    command = " ".join(str(item.get("command", "")).split())
    if command not in COMMANDS:
        raise PipelineConfigError(f"{where} ({name}): unknown command {command!r}; choose one of {sorted(COMMANDS)}")
    args = item.get("args") or {}
    if not isinstance(args, dict):
        raise PipelineConfigError(f"{where} ({name}): 'args' must be a mapping of flag -> value")
    if "output" in args:
        raise PipelineConfigError(f"{where} ({name}): 'output' is set by the pipeline (output_dir/stage name)")
    positional = item.get("positional") or []
    if not isinstance(positional, list):
        positional = [positional]
    return StageConfig(name=name, command=command, args=dict(args), positional=[str(p) for p in positional])


def _check_references(path: Path, config: PipelineConfig) -> None:
    seen: set[str] = set()
    for stage in config.stages:
        if stage.name in seen:
            raise PipelineConfigError(f"{path}: stage name {stage.name!r} is used twice")
        missing = stage.references() - seen
        if missing:
            raise PipelineConfigError(
                f"{path}: stage {stage.name!r} reads {{stage:{sorted(missing)[0]}}}, which is not an earlier stage"
            )
        seen.add(stage.name)
