"""Output paths checked before any work starts, then locked for the command's lifetime.

``with claim_output(path, "train"): ...`` first checks that `path` can be written (it is not a file
where a folder is wanted or the reverse, the nearest existing folder accepts a new file, the file
system has at least ``SYNTHEMBED_MIN_FREE_MB`` MiB free, default 64), raising one clear
`SynthEmbedError` (exit 2) otherwise, so a command never fails on its output after hours of work;
then it holds `synthembed.io.lock.output_lock` on it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from synthembed.errors import SynthEmbedError
from synthembed.io.lock import output_lock

__all__ = ["MIN_FREE_ENV", "check_output", "claim_output"]

MIN_FREE_ENV = "SYNTHEMBED_MIN_FREE_MB"
_DEFAULT_MIN_FREE_MB = 64


def _min_free_bytes() -> int:
    try:
        return int(float(os.environ.get(MIN_FREE_ENV, _DEFAULT_MIN_FREE_MB)) * 2**20)
    except ValueError:
        raise SynthEmbedError(f"${MIN_FREE_ENV} must be a number of MiB") from None


def _probe(folder: Path) -> str | None:
    """Create and remove a file in `folder`; the reason it fails, or None (catches read-only mounts, for root too)."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".synthembed-probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_output(path: str | Path, kind: Literal["dir", "file"] = "dir") -> Path:
    """Raise `SynthEmbedError` (one line naming `path` and the cause) if `path` cannot be written as a `kind`."""
    path = Path(path).expanduser()
    what = "output folder" if kind == "dir" else "output file"
    if kind == "dir" and path.exists() and not path.is_dir():
        raise SynthEmbedError(f"{what} {path} exists and is a file; give a folder (or remove the file)")
    if kind == "file" and path.is_dir():
        raise SynthEmbedError(f"{what} {path} is a folder; give a file name")
    existing = path if (kind == "dir" and path.is_dir()) else path.parent
    existing = existing.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SynthEmbedError(f"cannot write {what} {path}: {existing} is a file, not a folder")
    reason = _probe(existing)
    if reason is not None:
        raise SynthEmbedError(f"cannot write {what} {path}: {existing} is not writable ({reason})")
    if kind == "file" and path.exists() and not os.access(path, os.W_OK):
        raise SynthEmbedError(f"cannot write {what} {path}: the file is not writable")
    free = shutil.disk_usage(existing).free
    if free < _min_free_bytes():
        raise SynthEmbedError(
            f"cannot write {what} {path}: only {free / 2**20:.0f} MiB free on its file system "
            f"(at least {_min_free_bytes() / 2**20:.0f} MiB wanted; ${MIN_FREE_ENV} sets the minimum)"
        )
    return path


@contextlib.contextmanager
def claim_output(
    path: str | Path, command: str, kind: Literal["dir", "file"] = "dir", *, lock: bool = True
) -> Iterator[Path]:
    """Check `path` (`check_output`), then hold its lock (`output_lock`) for the ``with`` block.

    ``lock=False`` only checks: the other ranks of a torchrun launch, whose main process holds the lock.
    """
    path = check_output(path, kind)
    if not lock:
        yield path
        return
    with output_lock(path, command):
        yield path
