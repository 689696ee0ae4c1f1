"""Checkpoints and final model folders that are complete or not used, whenever a run is killed.

Checkpoints: the Trainer writes ``checkpoint-N/`` in place (weights, optimizer, scheduler, RNG state,
then ``trainer_state.json`` last), so a kill while it is being written leaves a folder that
`transformers.trainer_utils.get_last_checkpoint` would still pick and then fail to load.
`newest_complete_checkpoint` resumes from the newest checkpoint whose ``trainer_state.json`` is
there, parses and names its own step; `set_aside_incomplete` moves every other ``checkpoint-N`` to
``<output>/checkpoints-incomplete/`` with a warning naming it (never deleted: it may be all that is
left of a long run).

Final model: written whole into ``.<name>.partial`` beside the output folder, renamed to
``.<name>.ready`` when complete, then swapped in (old folder -> ``.<name>.replaced``, ready ->
output, replaced removed). `recover_output` finishes or undoes an interrupted publication when the
next run starts, so a reader sees either the old folder or the complete new one, and the entries
carried over (checkpoints, a user's files) are never lost.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "INCOMPLETE",
    "begin_publish",
    "checkpoint_problem",
    "finish_publish",
    "newest_complete_checkpoint",
    "recover_output",
    "set_aside_incomplete",
]

logger = logging.getLogger(__name__)

INCOMPLETE = "checkpoints-incomplete"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt")


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` (a ``checkpoint-N``) is not a complete checkpoint, or None when it is."""
    match = _CHECKPOINT.match(folder.name)
    if match is None or not folder.is_dir():
        return "not a checkpoint folder"
    state_file = folder / "trainer_state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no trainer_state.json (it is written last)"
    except (OSError, ValueError) as exc:
        return f"trainer_state.json unreadable ({exc})"
    if not isinstance(state, dict) or state.get("global_step") != int(match.group(1)):
        return f"trainer_state.json names step {state.get('global_step') if isinstance(state, dict) else '?'}"
    if not any(next(folder.glob(pattern), None) for pattern in _WEIGHTS):
        return "no weights file"
    return None


def _checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _CHECKPOINT.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(_CHECKPOINT.match(p.name).group(1)))


def newest_complete_checkpoint(folder: Path) -> Path | None:
    """The complete ``checkpoint-N`` with the largest N in `folder`, or None."""
    complete = [p for p in _checkpoints(folder) if checkpoint_problem(p) is None]
    return complete[-1] if complete else None


def set_aside_incomplete(folder: Path, output: Path) -> list[Path]:
    """Move every incomplete checkpoint of `folder` into ``output/checkpoints-incomplete``; returns the new paths."""
    moved = []
    for checkpoint in _checkpoints(folder):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            continue
        aside = output / INCOMPLETE
        aside.mkdir(parents=True, exist_ok=True)
        target = aside / checkpoint.name
        n = 1
        while target.exists():
            target = aside / f"{checkpoint.name}.{n}"
            n += 1
        os.replace(checkpoint, target)
        logger.warning("%s is incomplete (%s; the run was stopped while writing it): moved to %s, "
                       "resuming from the newest complete checkpoint", checkpoint, problem, target)
        moved.append(target)
    return moved


def _siblings(output: Path) -> tuple[Path, Path, Path]:
    output = output.absolute()  # "." and "out/" have a name to put beside them too
    return (output.with_name(f".{output.name}.partial"), output.with_name(f".{output.name}.ready"),
            output.with_name(f".{output.name}.replaced"))


def begin_publish(output: Path) -> Path:
    """A fresh, empty staging folder for the final model of `output` (any leftover is recovered first)."""
    recover_output(output)
    partial, _, _ = _siblings(output)
    partial.mkdir(parents=True)
    return partial


def finish_publish(output: Path, drop: Sequence[str] = ()) -> None:
    """Mark the staged folder complete, then swap it in for `output`, carrying over what `output` holds
    that the new model does not (checkpoints set aside, a user's files), except the entries in `drop`."""
    partial, ready, replaced = _siblings(output)
    os.replace(partial, ready)  # from here on the new folder is complete: a kill rolls forward
    _complete(output, ready, replaced, drop)


def _complete(output: Path, ready: Path, replaced: Path, drop: Sequence[str]) -> None:
    if output.is_dir():
        for entry in output.iterdir():
            if entry.name not in drop and not (ready / entry.name).exists():
                os.replace(entry, ready / entry.name)
    if output.exists():
        if replaced.exists():
            shutil.rmtree(replaced)
        os.replace(output, replaced)
    os.replace(ready, output)
    shutil.rmtree(replaced, ignore_errors=True)


def recover_output(output: Path) -> None:
    """Finish (complete staging) or undo (incomplete staging) a publication that a kill interrupted.

    Finishing carries everything over, checkpoints included (the rerun then resumes at the last step
    and publishes again); an incomplete staging folder holds only new files and is removed."""
    partial, ready, replaced = _siblings(output)
    if ready.is_dir():
        logger.warning("finishing the interrupted publication of %s", output)
        if replaced.is_dir() and not output.exists():
            os.replace(replaced, output)  # carry over from the old folder again, then swap
        _complete(output, ready, replaced, ())
    elif replaced.is_dir() and not output.exists():
        os.replace(replaced, output)
    elif replaced.is_dir():
        shutil.rmtree(replaced)
    if partial.is_dir():
        logger.warning("removing %s: a final model that was being written when the run stopped", partial)
        shutil.rmtree(partial)
