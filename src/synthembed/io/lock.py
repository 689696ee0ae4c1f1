"""One writer per output: an exclusive lock held for a command's lifetime, named after the output.

``with output_lock(path, "train"): ...`` takes ``<parent>/.<name>.lock`` (a sibling, so the output
itself may be deleted, replaced or renamed while it is held) with ``fcntl.flock``. The kernel drops a
flock when its process dies, however it dies (``kill -9`` included), so a lock file left behind by a
dead process is no obstacle: the next command takes it over (the stale file only tells who held it
last). While the lock is held the file says who holds it (pid, host, command, since when), and a
second command on the same output stops at once with `OutputLocked`, naming that holder.

Re-entrant within one process (``synthembed run`` holds its output folder and runs each stage's
command in-process, which takes its own stage folder's lock). flock is local to a machine: on a
network file system shared by several hosts it may not exclude a writer on another host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from synthembed.errors import SynthEmbedError

__all__ = ["OutputLocked", "lock_path", "output_lock"]

_held: dict[str, int] = {}  # lock path -> nesting depth, for this process
_guard = threading.Lock()


class OutputLocked(SynthEmbedError):
    """Another live process is writing this output (exit code 2 on the command line)."""


def lock_path(output: str | Path) -> Path:
    """The lock file of an output folder or file: ``<parent>/.<name>.lock``."""
    output = Path(output).expanduser().absolute()
    return output.parent / f".{output.name}.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')}, "
                f"since {info.get('since')})")
    except (OSError, ValueError):
        return "another process (its details are not written yet)"


@contextlib.contextmanager
def output_lock(output: str | Path, command: str = "synthembed") -> Iterator[Path]:
    """Hold the exclusive lock of `output` for the ``with`` block; `OutputLocked` if another process has it."""
    path = lock_path(output)
    key = str(path)
    with _guard:
        if key in _held:
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield path
        finally:
            with _guard:
                _held[key] -= 1
        return
    fd = _acquire(path, output, command)
    with _guard:
        _held[key] = 1
    try:
        yield path
    finally:
        with _guard:
            del _held[key]
        with contextlib.suppress(OSError):
            # unlink while still holding the lock: a waiter that opened this inode sees it vanish and retries
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.unlink(path)
        os.close(fd)


def _acquire(path: Path, output: str | Path, command: str) -> int:
    """Open, flock and fill the lock file; retries if the file was replaced between open and flock."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SynthEmbedError(f"cannot create the folder of {output}: {exc.strerror or exc}") from None
    for _ in range(50):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SynthEmbedError(f"cannot create the lock file {path} for {output}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLocked(
                f"{output} is being written by {_holder(path)}; wait for it to finish or stop it "
                f"(one writer per output; the lock is {path})"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed the file after we opened it: take the new one
            os.close(fd)
            continue
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        return fd
    raise OutputLocked(f"{output}: could not take the lock {path} (it keeps being replaced)")
