"""Checkpoints and final model folders are complete or not used (issue 15, item 2).

Fast part (default suite): an incomplete checkpoint is set aside with a warning naming it and the run
resumes from the newest complete one to the same weights; a half-published final model is undone or
finished. Long part (``-m slow``): ``kill -9`` of `synthembed train` and `synthembed refine` at 10+
moments (while a checkpoint is written, while the final model is written, and at random times), the
same command resumed after each, final weights compared with an uninterrupted run's.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from synthembed.training import checkpoints as ckpt

SRC = str(Path(__file__).resolve().parents[1] / "src")
SENTENCES = [
    ("A man is playing a guitar.", "Someone plays an instrument.", "A man is sleeping."),
    ("Two dogs run in a field.", "Dogs are running outside.", "Two cats sleep indoors."),
    ("A woman is cooking dinner.", "Someone prepares food.", "A woman is swimming."),
    ("Kids play football in the park.", "Children are playing a game.", "The park is empty."),
    ("A red car drives fast.", "A vehicle is moving quickly.", "A red car is parked."),
    ("The old man reads a book.", "An elderly person is reading.", "The old man is running."),
]


def _fake_checkpoint(folder: Path, step: int, *, state: str | None = None, weights: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if weights:
        (path / "model.safetensors").write_bytes(b"w")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_newest_complete_checkpoint_and_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "model"
    folder = out / "checkpoints"
    _fake_checkpoint(folder, 10, state=json.dumps({"global_step": 10}))
    _fake_checkpoint(folder, 20, state=json.dumps({"global_step": 20}))
    _fake_checkpoint(folder, 25, state='{"global_step": 2')  # cut while written
    _fake_checkpoint(folder, 30)  # killed before trainer_state.json
    _fake_checkpoint(folder, 40, state=json.dumps({"global_step": 40}), weights=False)
    assert ckpt.checkpoint_problem(folder / "checkpoint-30") == "no trainer_state.json (it is written last)"
    assert ckpt.newest_complete_checkpoint(folder) == folder / "checkpoint-20"
    with caplog.at_level(logging.WARNING):
        moved = ckpt.set_aside_incomplete(folder, out)
    assert [p.name for p in moved] == ["checkpoint-25", "checkpoint-30", "checkpoint-40"]
    assert all(p.parent == out / ckpt.INCOMPLETE and p.is_dir() for p in moved)  # moved, never deleted
    assert "checkpoint-25 is incomplete" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-10", "checkpoint-20"]
    _fake_checkpoint(folder, 25)  # the same name again later: kept beside the first one
    assert [p.name for p in ckpt.set_aside_incomplete(folder, out)] == ["checkpoint-25.1"]


def test_publication_is_finished_or_undone(tmp_path: Path) -> None:
    out = tmp_path / "model"
    (out / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (out / "user-notes.txt").write_text("mine")
    # killed while the final model was written: the partial folder is removed, the folder untouched
    partial = ckpt.begin_publish(out)
    (partial / "model.safetensors").write_bytes(b"half")
    ckpt.recover_output(out)
    assert not partial.exists() and sorted(p.name for p in out.iterdir()) == ["checkpoints", "user-notes.txt"]
    # killed after the staged folder was complete, between the two renames: finished on the next start
    partial = ckpt.begin_publish(out)
    (partial / "model.safetensors").write_bytes(b"new")
    os.replace(partial, tmp_path / ".model.ready")
    os.replace(out, tmp_path / ".model.replaced")
    ckpt.recover_output(out)
    assert (out / "model.safetensors").read_bytes() == b"new"
    assert (out / "checkpoints").is_dir() and (out / "user-notes.txt").is_file()  # carried over
    assert not (tmp_path / ".model.ready").exists() and not (tmp_path / ".model.replaced").exists()
    # a normal publication drops what it is told to
    partial = ckpt.begin_publish(out)
    (partial / "model.safetensors").write_bytes(b"newer")
    ckpt.finish_publish(out, drop=["checkpoints"])
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "user-notes.txt"]


def _triplets(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{k}-{i}", "anchor": a, "positive": p, "negative": n}) + "\n"
                            for k in range(2) for i, (a, p, n) in enumerate(SENTENCES)))
    return path


def _state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _max_diff(a: Path, b: Path) -> float:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def test_incomplete_checkpoint_is_set_aside_and_the_run_resumes_to_the_same_weights(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The reported failure: checkpoint-N half written at a kill blocked every later run."""
    from transformers import TrainerCallback

    from synthembed.config import TrainConfig
    from synthembed.training import trainer as trainer_module
    from synthembed.training.syncse import train_from_config

    def train(output: Path) -> Path:
        config = TrainConfig(data=str(_triplets(tmp_path)), output=str(output), model=str(tiny_bert_dir),
                             pooling="mean", max_length=16, batch_size=4, lr=1e-3, max_steps=4, eval_steps=2, save_steps=2,
                             seed=1, precision="fp32")
        return train_from_config(config, dev=False)

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    straight = train(tmp_path / "straight")
    out = tmp_path / "resumed"
    real_fit = trainer_module.fit
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "fit", lambda *a, **k: real_fit(*a, callbacks=[Interrupt()], **k))
        with pytest.raises(KeyboardInterrupt):
            train(out)
    # what a kill -9 leaves: checkpoint-4 without its trainer_state.json, and a half-written final model
    shutil.copytree(out / "checkpoints" / "checkpoint-2", out / "checkpoints" / "checkpoint-4")
    (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')
    (tmp_path / ".resumed.partial").mkdir()
    (tmp_path / ".resumed.partial" / "model.safetensors").write_bytes(b"half")
    with caplog.at_level(logging.WARNING):
        train(out)
    assert "checkpoint-4 is incomplete" in caplog.text and "checkpoints-incomplete" in caplog.text
    assert (out / ckpt.INCOMPLETE / "checkpoint-4" / "trainer_state.json").is_file()  # kept, not deleted
    assert not (tmp_path / ".resumed.partial").exists() and not (out / "checkpoints").exists()
    assert _max_diff(straight, out) == 0.0


# ---------------------------------------------------------------- the kill loop (slow)
_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    kill_at = os.environ.get("SYNTHEMBED_TEST_KILL_AT", "")
    if kill_at.startswith("checkpoint:"):  # kill -9 while checkpoint-N is being written (after weights, before state)
        from transformers import Trainer
        step, real = int(kill_at.split(":")[1]), Trainer._save_rng_state
        def save_rng_state(self, output_dir):
            real(self, output_dir)
            if self.state.global_step == step:
                os.kill(os.getpid(), signal.SIGKILL)
        Trainer._save_rng_state = save_rng_state
    elif kill_at == "final":  # kill -9 while the final model is being written (weights saved, card not yet)
        from synthembed.training import trainer
        def card(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        trainer._append_model_card = card
    from synthembed.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _run(argv: list[str], kill_at: str = "", kill_after: float | None = None, started: Path | None = None) -> str:
    """Run the command in a child; kill it as asked. Returns what happened ("exit 0", "killed (...)")."""
    env = {**os.environ, "PYTHONPATH": SRC, "SYNTHEMBED_TEST_KILL_AT": kill_at}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not (started and started.exists()):
            time.sleep(0.05)  # wait for the event "training has started", then a random delay
        time.sleep(kill_after)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    if proc.returncode == -signal.SIGKILL:
        return f"killed ({kill_at or f'{kill_after:.2f} s after training started'})"
    assert proc.returncode == 0, err[-3000:]
    return "exit 0" if not kill_at and kill_after is None else f"exit 0 (finished before the kill: {kill_at or kill_after})"


def _kill_loop(tmp_path: Path, argv_for, started_marker: str, compare_file: str) -> list[str]:
    reference = tmp_path / "reference"
    assert _run(argv_for(reference)) == "exit 0"
    out = tmp_path / "killed"
    rng = random.Random(15)
    plan = ["checkpoint:2", "checkpoint:4", "checkpoint:6", "final"] + [f"random:{rng.uniform(0, 3):.2f}" for _ in range(7)]
    log = []
    for moment in plan:
        if moment.startswith("random:"):
            log.append(_run(argv_for(out), kill_after=float(moment.split(":")[1]), started=out / started_marker))
        else:
            log.append(_run(argv_for(out), kill_at=moment))
    log.append(_run(argv_for(out)))  # the same command, to completion
    diff = _max_diff(reference, out)
    aside = sorted(p.name for p in (out / ckpt.INCOMPLETE).iterdir())
    log.append(f"set aside as incomplete (kept in {ckpt.INCOMPLETE}/): {aside}")
    log.append(f"max |reference - resumed| over all weights: {diff}")
    print("\n".join(log))
    assert sum(entry.startswith("killed") for entry in log) >= 10, log
    assert diff == 0.0, log
    assert {"checkpoint-2", "checkpoint-4", "checkpoint-6"} <= set(aside), log  # the three killed mid-write
    assert (out / compare_file).is_file()
    return log


@pytest.mark.slow
def test_kill_loop_train(tmp_path: Path, tiny_bert_dir: Path) -> None:
    data = _triplets(tmp_path)

    def argv(output: Path) -> list[str]:
        return ["train", "--model", str(tiny_bert_dir), "--data", str(data), "--output", str(output), "--no-dev",
                "--max-steps", "8", "--eval-steps", "1", "--save-steps", "1", "--batch-size", "4", "--lr", "1e-3", "--max-length", "16",
                "--precision", "fp32", "--pooling", "mean", "--seed", "3"]

    _kill_loop(tmp_path, argv, "train_config.yaml", "train_config.yaml")


@pytest.mark.slow
def test_kill_loop_refine(tmp_path: Path, tiny_bert_dir: Path) -> None:
    data = tmp_path / "chains.jsonl"
    chains = [[a, p, n, "Nothing at all.", "Words."] for a, p, n in SENTENCES]
    data.write_text("".join(json.dumps({"id": f"c{i}", "sentences": c}) + "\n" for i, c in enumerate(chains)))
    dev = tmp_path / "dev"
    (dev / "sts").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["score\tsentence1\tsentence2"] + [f"{rng.uniform(0, 5):.2f}\t{a}\t{p}" for a, p, _ in SENTENCES * 2]
    (dev / "sts" / "stsb.dev.tsv").write_text("\n".join(lines) + "\n")

    def argv(output: Path) -> list[str]:
        return ["refine", "--model", str(tiny_bert_dir), "--data", str(data), "--output", str(output),
                "--data-dir", str(dev), "--dev-tasks", "stsb", "--epochs", "2", "--eval-steps", "1",
                "--lr", "1e-3", "--max-length", "16", "--precision", "fp32", "--seed", "3"]

    _kill_loop(tmp_path, argv, "train_config.yaml", "refine_results.json")
