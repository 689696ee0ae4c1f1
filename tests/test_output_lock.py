"""One writer per output (a lock naming its holder, stale locks of dead processes taken over) and
output paths checked before any work, in every command that writes (issue 15, items 1 and 6)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from synthembed.cli import main
from synthembed.io.lock import OutputLocked, lock_path, output_lock
from synthembed.io.outputs import check_output

SRC = str(Path(__file__).resolve().parents[1] / "src")

_HOLDER = textwrap.dedent(
    """
    import sys
    from synthembed.io.lock import output_lock
    with output_lock(sys.argv[1], "synthesize syncse"):
        print("held", flush=True)
        sys.stdin.readline()   # hold until told (or killed)
    """
)


def _holder(target: Path) -> subprocess.Popen:
    """Another process holding the lock of `target`; returns once it holds it (an event, not a sleep)."""
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(target)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _inputs(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("A man plays a guitar on the street.\nTwo dogs run in a green field.\n", encoding="utf-8")
    return path


def _syncse(tmp_path: Path, out: Path) -> list[str]:
    return ["synthesize", "syncse", "--backend", "fake", "--input", str(_inputs(tmp_path)), "--output", str(out),
            "--no-progress"]


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "D"
    holder = _holder(out)
    try:
        assert main(_syncse(tmp_path, out)) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0
        assert f"pid {holder.pid} on {socket.gethostname()}" in err and "synthesize syncse" in err
        assert not (out / "records").exists()  # refused before writing anything
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    assert not lock_path(out).exists()  # released and removed by its holder
    assert main(_syncse(tmp_path, out)) == 0


def test_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "D"
    holder = _holder(out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert lock_path(out).exists()  # the dead holder could not clean up
    assert main(_syncse(tmp_path, out)) == 0
    assert (out / "records.jsonl").is_file()


def test_lock_is_reentrant_in_one_process_and_exclusive_across(tmp_path: Path) -> None:
    out = tmp_path / "x"
    with output_lock(out, "a"):
        with output_lock(out, "b"):  # synthembed run -> a stage in the same process
            pass
        assert lock_path(out).exists()
        code = subprocess.run(
            [sys.executable, "-c", "import sys; from synthembed.io.lock import output_lock\n"
             "with output_lock(sys.argv[1]): pass", str(out)],
            env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True,
        )
        assert code.returncode != 0 and "OutputLocked" in code.stderr and str(os.getpid()) in code.stderr
    assert not lock_path(out).exists()
    with pytest.raises(OutputLocked, match="pid"):
        holder = _holder(out)
        try:
            with output_lock(out):
                pass
        finally:
            holder.kill()
            holder.wait(timeout=30)


# ---------------------------------------------------------------- output paths checked first
def _commands(tmp_path: Path, out: Path) -> dict[str, list[str]]:
    data = _inputs(tmp_path)
    config = tmp_path / "pipe.yaml"
    config.write_text(textwrap.dedent(f"""
        name: t
        output_dir: {out}
        stages:
          - name: syn
            command: synthesize syncse
            args: {{input: {data}, backend: fake}}
    """))
    return {
        "syncse": ["synthesize", "syncse", "--backend", "fake", "--input", str(data), "--output", str(out)],
        "graded": ["synthesize", "graded", "--mode", "levels", "--backend", "fake", "--input", str(data),
                   "--output", str(out)],
        "chains": ["synthesize", "chains", "--input", str(data), "--output", str(out), "--model", "/nonexistent"],
        "train": ["train", "--data", str(data), "--output", str(out), "--model", "/nonexistent", "--no-dev"],
        "refine": ["refine", "--data", str(data), "--output", str(out), "--model", "/nonexistent"],
        "run": ["run", str(config), "--no-report"],
    }


@pytest.mark.parametrize("command", ["syncse", "graded", "chains", "train", "refine", "run"])
def test_output_that_is_a_file_fails_first_in_one_line(tmp_path: Path, command: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taken"
    out.write_text("a file\n")
    assert main(_commands(tmp_path, out)[command]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"synthembed: error: output folder {out} exists and is a file; give a folder (or remove the file)"
    below = tmp_path / "taken" / "sub"
    assert main(_commands(tmp_path, below)[command]) == 2
    assert f"{out} is a file, not a folder" in capsys.readouterr().err


def test_evaluate_checks_its_output_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "results.json"
    folder.mkdir()
    # a model that does not exist: the output error must come first, not the model's
    assert main(["evaluate", "/nonexistent-model", "--output", str(folder)]) == 2
    assert f"output file {folder} is a folder" in capsys.readouterr().err


def test_read_only_and_full_file_systems_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthembed.errors import SynthEmbedError
    from synthembed.io import outputs

    monkeypatch.setattr(outputs, "_probe", lambda folder: "Read-only file system")
    with pytest.raises(SynthEmbedError, match="is not writable \\(Read-only file system\\)"):
        check_output(tmp_path / "new" / "deeper")
    monkeypatch.undo()
    monkeypatch.setenv(outputs.MIN_FREE_ENV, str(10**12))
    with pytest.raises(SynthEmbedError, match="MiB free"):
        check_output(tmp_path / "new")
    monkeypatch.setenv(outputs.MIN_FREE_ENV, "1")
    assert check_output(tmp_path / "new") == tmp_path / "new"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_folder_is_refused(tmp_path: Path) -> None:
    from synthembed.errors import SynthEmbedError

    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(SynthEmbedError, match="not writable"):
            check_output(locked / "out")
    finally:
        locked.chmod(0o755)


# ---------------------------------------------------------------- argument checks before any model is loaded
def test_model_arguments_are_checked_before_any_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _inputs(tmp_path)
    # chains: the teacher is checked before the (also missing) LLM would be loaded
    argv = ["synthesize", "chains", "--input", str(data), "--output", str(tmp_path / "c"), "--model", "/no/llm",
            "--teacher", "/no/teacher"]
    assert main(argv) == 2
    assert "--teacher /no/teacher: no such file or folder" in capsys.readouterr().err
    # graded: --check-levels is checked before synthesis, so nothing is written
    argv = ["synthesize", "graded", "--mode", "levels", "--backend", "fake", "--input", str(data),
            "--output", str(tmp_path / "g"), "--check-levels", "/no/encoder", "--no-progress"]
    assert main(argv) == 2
    assert "--check-levels /no/encoder: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "g" / "records").exists()


def test_sigterm_flushes_exits_143_and_the_same_command_resumes(tmp_path: Path) -> None:
    """SIGTERM is handled like Ctrl-C: buffered rows are written, the lock released, exit 143."""
    from synthembed.synthesis.records import read_manifest

    data = tmp_path / "in.txt"
    data.write_text("".join(f"Sentence number {i} is about a quiet little town.\n" for i in range(400)))
    out = tmp_path / "out"
    script = ("import sys, time\nfrom synthembed.llm import fake\nreal = fake.FakeBackend.answer\n"
              "def slow(self, request):\n    time.sleep(0.01)\n    return real(self, request)\n"
              "fake.FakeBackend.answer = slow\nfrom synthembed.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    argv = ["synthesize", "syncse", "--backend", "fake", "--input", str(data), "--output", str(out),
            "--no-progress", "--shard-size", "1000", "--flush-seconds", "1000"]
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", script, *argv], env=env, stderr=subprocess.PIPE, text=True)
    import time

    deadline = time.monotonic() + 120
    while not (out / "cache.sqlite").exists() and time.monotonic() < deadline:  # the run has started sending
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM; what was written is kept" in err
    manifest = read_manifest(out)
    assert manifest["complete"] is False and 0 < manifest["rows_done"] < 400  # buffered rows were flushed
    assert not lock_path(out).exists()
    assert main(argv) == 0 and read_manifest(out)["rows_done"] == 400


def test_disk_full_during_a_run_is_one_line_and_the_same_command_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from synthembed.synthesis import records
    from synthembed.synthesis.records import iter_records, read_manifest

    data = tmp_path / "in.txt"
    data.write_text("".join(f"Sentence number {i} is about a quiet little town.\n" for i in range(30)))
    out = tmp_path / "out"
    argv = ["synthesize", "syncse", "--backend", "fake", "--input", str(data), "--output", str(out),
            "--no-progress", "--shard-size", "4"]
    real = records.atomic_write_text
    calls = {"n": 0}

    def filling_disk(path, text):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(records, "atomic_write_text", filling_disk)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No space left on device" in err and "run the same command again" in err
    monkeypatch.setattr(records, "atomic_write_text", real)
    assert main(argv) == 0
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["rows_done"] == 30
    ids = [r["id"] for r in iter_records(out)]
    assert len(ids) == len(set(ids)) == manifest["counts"]["written"]
