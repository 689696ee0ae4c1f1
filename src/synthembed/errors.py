"""Exceptions with messages a user can act on (they name the file, line or request)."""

from __future__ import annotations

from pathlib import Path


class SynthEmbedError(Exception):
    """Base class: the CLI prints these as one clean line instead of a traceback."""


class DataError(SynthEmbedError):
    """Bad input data; the message names the file and, where known, the line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ModelLoadError(SynthEmbedError):
    """A model path or id that holds no loadable model."""
