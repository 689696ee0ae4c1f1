"""Layer (a) of the runner: a resumable, sharded record store keyed by row id.

Layout of an output folder::

    OUT/manifest.json           config, model, backend, seed, counts by outcome, token usage, elapsed, shards
    OUT/records/part-NNNNN.jsonl   kept records, one JSON object per line, each with a unique "id"
    OUT/dropped/part-NNNNN.jsonl   dropped rows: {"id", "reason", "detail", "raw", "meta"} (raw answers kept for debugging)
    OUT/records.jsonl           all records merged in input order, written when a run completes; removed
                                when a run into the folder starts, and only read while the manifest says
                                complete and lists exactly the shards on disk (it can never be older than them)

API (what a generator of any kind, LLM or not, uses)::

    store = RecordStore(out_dir, config={...}, shard_size=100)   # reads what is already there
    if row_id in store.done_ids: ...                                # skip rows done by an earlier run
    store.add(record)                          # record is a dict with a unique "id"
    store.drop(row_id, "parse_failure", raw=text, detail="...")
    store.flush()                              # optional: also automatic every shard_size rows / flush_seconds
    store.finish(order=[ids in input order], complete=True)   # last shard, manifest, merged records.jsonl

Crash safety: rows live in memory until a flush writes them as NEW shard files with atomic renames
(temp file + fsync + rename); existing shards are never modified. A resumed store rebuilds
``done_ids``, the counts and the token usage by reading every shard, so ``kill -9`` at any moment
loses at most the unflushed rows (which the next run regenerates, from the request cache when one
is used) and never duplicates a row: each id is written by exactly one flush, and the files of a
flush that was cut short are either complete or absent. The manifest is a summary rewritten after
every flush; the shards are the truth.

Retrying: a row dropped as ``backend_error`` (the server failed, not the answer) can be tried again
in the same folder (``retry_reasons=("backend_error",)``, what ``--retry-errors`` sets): it is not in
``done_ids``, and its new outcome, written to a later shard, supersedes the old drop when the folder
is read. Every other drop (content: meta text, copies, ...) stays as it is.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from synthembed.errors import DataError, SynthEmbedError
from synthembed.io.atomic import atomic_write_json, atomic_write_text
from synthembed.llm.redact import redact

__all__ = ["RecordStore", "iter_records", "read_manifest", "record_files"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MERGED = "records.jsonl"
_PART = re.compile(r"^part-(\d{5,})\.jsonl$")


def _shards(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _PART.match(p.name))


def _read_shard(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"corrupt shard line ({exc.msg}); shards are written atomically, "
                                "so this file was edited or damaged outside SynthEmbed", number) from None
            yield obj


def record_files(out_dir: str | Path) -> list[Path]:
    """The files holding a folder's kept records: the merged records.jsonl of a complete run, else its shards.

    The merged file is used only while the manifest says the run is complete and lists exactly the
    shards on disk, so a merged file older than its shards (a later run resumed the folder) never wins.
    """
    out_dir = Path(out_dir)
    merged = out_dir / MERGED
    shards = _shards(out_dir / "records")
    if merged.is_file() and not shards:  # a records.jsonl on its own (copied, hand-made): nothing to be older than
        return [merged]
    if merged.is_file():
        try:
            manifest = read_manifest(out_dir) or {}
        except (OSError, ValueError):
            manifest = {}
        listed = manifest.get("shards", {}).get("records") if isinstance(manifest.get("shards"), dict) else None
        if manifest.get("complete") is True and listed == [p.name for p in shards]:
            return [merged]
        logger.warning("%s is older than the shards beside it (a later run resumed the folder): reading the shards",
                       merged)
    return shards


def iter_records(out_dir: str | Path) -> Iterator[dict[str, Any]]:
    """All kept records of an output folder (complete or not), shard by shard."""
    for shard in _shards(Path(out_dir) / "records"):
        yield from _read_shard(shard)


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


class RecordStore:
    """Resumable sharded writer of records and drops (see the module docstring)."""

    def __init__(
        self,
        out_dir: str | Path,
        config: dict[str, Any],
        *,
        shard_size: int = 100,
        flush_seconds: float = 30.0,
        overwrite: bool = False,
        check_keys: Sequence[str] = (),
        retry_reasons: Sequence[str] = (),
    ) -> None:
        """Open `out_dir`, resuming it when it holds an earlier run.

        ``config`` is recorded in the manifest; the keys named in ``check_keys`` must match the
        earlier run's config (resuming with another model or seed would mix two datasets), else a
        `SynthEmbedError` asks for ``--overwrite`` or a new folder. Rows dropped for one of
        ``retry_reasons`` are not done: they are to be tried again (see the module docstring).
        """
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.out_dir = Path(out_dir)
        if overwrite and self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        self.records_dir = self.out_dir / "records"
        self.dropped_dir = self.out_dir / "dropped"
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.dropped_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.shard_size = shard_size
        self.flush_seconds = flush_seconds
        self._clean_temp_files()

        previous = read_manifest(self.out_dir)
        if previous is not None:
            old = previous.get("config", {})
            changed = [k for k in check_keys if k in old and old.get(k) != config.get(k)]
            if changed:
                diffs = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in changed)
                raise SynthEmbedError(
                    f"{self.out_dir} holds a run with a different configuration ({diffs}); "
                    "use --overwrite or another --output"
                )
        self._elapsed_before = float(previous.get("elapsed_s", 0.0)) if previous else 0.0
        self._runs = list(previous.get("runs", [])) if previous else []
        self._started = time.monotonic()
        self._started_wall = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        self.done_ids: set[str] = set()
        self.counts: Counter = Counter()  # "written" and drop reasons
        self.usage: Counter = Counter()  # prompt_tokens, completion_tokens, cached_requests, requests
        self.extra_counts: Counter = Counter()  # e.g. input rows skipped before the runner
        self._next_part = 0
        self._drop_reason: dict[str, str] = {}  # id -> reason, for the rows whose outcome is a drop
        self._scan()
        self.retrying = {i for i, r in self._drop_reason.items() if r in set(retry_reasons)}
        self.done_ids -= self.retrying
        self._resumed_rows = len(self.done_ids)
        (self.out_dir / MERGED).unlink(missing_ok=True)  # rewritten when this run completes; never stale
        self._records: list[dict[str, Any]] = []
        self._drops: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------ resume
    def _clean_temp_files(self) -> None:
        for folder in (self.out_dir, self.records_dir, self.dropped_dir):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def _scan(self) -> None:
        """Rebuild done ids, counts and usage from the shards on disk, in flush order (a retried
        backend_error drop is superseded by the outcome a later flush wrote)."""
        shards = [(int(_PART.match(p.name).group(1)), kind, p)
                  for kind, folder in (("dropped", self.dropped_dir), ("records", self.records_dir))
                  for p in _shards(folder)]
        seen_in: dict[str, int] = {}
        for part, kind, shard in sorted(shards, key=lambda t: (t[0], t[1])):
            self._next_part = max(self._next_part, part + 1)
            for obj in _read_shard(shard):
                row_id = obj.get("id")
                if row_id in self.done_ids:
                    old = self._drop_reason.get(row_id)
                    if old != "backend_error" or seen_in[row_id] >= part:
                        raise DataError(shard, f"row id {row_id!r} appears twice in the output; the folder was "
                                        "edited outside SynthEmbed")
                    self._supersede(row_id)
                self.done_ids.add(row_id)
                seen_in[row_id] = part
                reason = "written" if kind == "records" else obj.get("reason", "unknown")
                if kind == "dropped":
                    self._drop_reason[row_id] = reason
                self.counts[reason] += 1
                self._add_usage(obj.get("meta", {}).get("usage"))

    def _supersede(self, row_id: str) -> None:
        """Forget the backend_error drop of `row_id`: a retry gives it a new outcome."""
        self.counts[self._drop_reason.pop(row_id)] -= 1

    def _add_usage(self, usage: dict[str, int] | None) -> None:
        if usage:
            for key, value in usage.items():
                self.usage[key] += int(value)

    # ------------------------------------------------------------ writing
    def _check_new(self, row_id: Any) -> None:
        if not isinstance(row_id, str) or not row_id:
            raise ValueError(f"a record needs a non-empty string 'id', got {row_id!r}")
        if row_id in self.done_ids:
            raise ValueError(f"row {row_id!r} was already written or dropped")
        if row_id in self.retrying:
            self.retrying.discard(row_id)
            self._supersede(row_id)

    def add(self, record: dict[str, Any]) -> None:
        """Keep one record (a JSON-serialisable dict with a unique string ``id``)."""
        self._check_new(record.get("id"))
        self.done_ids.add(record["id"])
        self.counts["written"] += 1
        self._add_usage(record.get("meta", {}).get("usage"))
        self._records.append(record)
        self._maybe_flush()

    def drop(
        self,
        row_id: str,
        reason: str,
        *,
        raw: Any = None,
        detail: str = "",
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Record that row `row_id` produced no record, why, and the raw answer(s) for debugging."""
        self._check_new(row_id)
        self.done_ids.add(row_id)
        self.counts[reason] += 1
        self._drop_reason[row_id] = reason
        meta = meta or {}
        self._add_usage(meta.get("usage"))
        self._drops.append({"id": row_id, "reason": reason, "detail": redact(detail), "raw": _redact_raw(raw),
                            "meta": meta})
        self._maybe_flush()

    @property
    def pending(self) -> int:
        return len(self._records) + len(self._drops)

    def _maybe_flush(self) -> None:
        if self.pending >= self.shard_size or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows as new shard files (atomic renames), then the manifest."""
        if self.pending:
            part = f"part-{self._next_part:05d}.jsonl"
            self._next_part += 1
            if self._drops:
                atomic_write_text(self.dropped_dir / part, _jsonl(self._drops))
            if self._records:
                atomic_write_text(self.records_dir / part, _jsonl(self._records))
            self._records, self._drops = [], []
        self._last_flush = time.monotonic()
        self.write_manifest(complete=False)

    def elapsed(self) -> float:
        """Seconds spent over all runs into this folder."""
        return self._elapsed_before + time.monotonic() - self._started

    def write_manifest(self, *, complete: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        this_run = {
            "started": self._started_wall,
            "elapsed_s": round(time.monotonic() - self._started, 3),
            "resumed_rows": self._resumed_rows,
        }
        manifest = {
            "config": self.config,
            "complete": complete,
            "counts": {"written": self.counts.get("written", 0),
                       "dropped": {k: v for k, v in sorted(self.counts.items()) if k != "written" and v > 0},
                       **({"input_skipped": dict(sorted(self.extra_counts.items()))} if self.extra_counts else {})},
            "rows_done": len(self.done_ids),
            "usage": dict(sorted(self.usage.items())),
            "elapsed_s": round(self.elapsed(), 3),
            "runs": self._runs + [this_run],
            "shards": {
                "records": [p.name for p in _shards(self.records_dir)],
                "dropped": [p.name for p in _shards(self.dropped_dir)],
            },
            **(extra or {}),
        }
        atomic_write_json(self.out_dir / MANIFEST, manifest)
        return manifest

    def finish(
        self, *, order: Iterable[str] | None = None, complete: bool = True, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Flush, and when `complete`, merge all records into OUT/records.jsonl in `order` (ids)."""
        self.flush()
        if complete:
            records = list(iter_records(self.out_dir))
            if order is not None:
                rank = {row_id: i for i, row_id in enumerate(order)}
                records.sort(key=lambda r: (rank.get(r["id"], len(rank)), r["id"]))
            atomic_write_text(self.out_dir / MERGED, _jsonl(records))
        return self.write_manifest(complete=complete, extra=extra)


def _redact_raw(raw: Any) -> Any:
    """Server texts kept for debugging, through the one redaction helper (strings, or a dict of them)."""
    if isinstance(raw, str):
        return redact(raw)
    if isinstance(raw, dict):
        return {k: redact(v) if isinstance(v, str) else v for k, v in raw.items()}
    return raw


def _jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
