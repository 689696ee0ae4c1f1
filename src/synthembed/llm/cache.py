"""Request cache in sqlite: key = hash(model, messages, sampling params); stores errors as well.

A re-run (or a resumed run) looks every request up before sending it, so nothing already answered
is sent twice. Final errors of a request (a 400: the server refuses this payload) are cached too, so
a re-run does not hammer a server with requests that fail for good; ``retry_errors=True`` ignores
cached errors. Errors of the connection or the server (``Generation.transient``: refused, timeout,
5xx) are never cached: they say nothing about the request. Error texts pass through
`synthembed.llm.redact.redact`. Writes are committed one by one (WAL journal), so a killed run keeps
every answer it received.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

from synthembed.llm.base import ChatRequest, Generation
from synthembed.llm.redact import redact

__all__ = ["RequestCache"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    text TEXT,
    error TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class RequestCache:
    """sqlite-backed map from `ChatRequest.cache_key(model)` to a `Generation`."""

    def __init__(self, path: str | Path, *, retry_errors: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retry_errors = retry_errors
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)
        self._conn.commit()
        self.hits = 0
        self.misses = 0

    def get(self, request: ChatRequest, model: str) -> Generation | None:
        """The cached generation for `request` (renamed to its id, marked cached), or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT text, error, prompt_tokens, completion_tokens, finish_reason FROM generations WHERE key = ?",
                (request.cache_key(model),),
            ).fetchone()
        if row is None or (row[1] is not None and self.retry_errors):
            self.misses += 1
            return None
        self.hits += 1
        return Generation(request.id, row[0], row[1], row[2], row[3], row[4], cached=True)

    def put(self, request: ChatRequest, model: str, generation: Generation) -> None:
        """Store the answer (or final error) to `request`; a transient error is not stored."""
        if generation.transient:
            return
        row = (request.cache_key(model), generation.text, redact(generation.error), generation.prompt_tokens,
               generation.completion_tokens, generation.finish_reason, time.time())
        with self._lock:
            try:
                self._conn.execute("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                self._conn.commit()
            except sqlite3.OperationalError as exc:
                if "full" in str(exc):  # SQLITE_FULL: the disk, reported like any other full disk
                    raise OSError(errno.ENOSPC, f"No space left on device ({exc})", str(self.path)) from None
                raise

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_cached(generation: Generation) -> Generation:
    return replace(generation, cached=True)
