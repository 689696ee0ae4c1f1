"""Layer (b) of the runner: drive an LLM task over input rows, with a cache, filters and resumption.

A *task* (one per synthesis method) is a set of pure functions, table-testable without a model::

    class MyTask:                                   # satisfies `LLMTask`
        name = "syncse"
        slots = ("positive", "negative")           # one request per slot per row (default ("output",))
        def config(self) -> dict: ...             # what the manifest records (prompt pools, ...)
        def build_request(self, row, rng, slot) -> ChatRequest: ...   # rng: random.Random seeded by
                                                                      # (run seed, task, row id, slot)
        def parse(self, text, row, slot) -> Any: ...                  # raise Drop(reason, detail)
        def assemble(self, row, parsed: dict[slot, Any]) -> dict: ... # the record; may raise Drop

The runner (`run_task`) reads the rows (after ``limit``), skips the ids an earlier run into the same
folder already wrote or dropped, builds every request (the request id is set to ``"<row id>/<slot>"``),
answers what it can from the request cache, streams the rest through the backend (which may answer
out of order; rows complete when all their slots are in), parses, assembles and writes records
through `synthembed.synthesis.records.RecordStore` (layer a). Every row ends as exactly one record or
one drop with its reason: ``backend_error`` (after the backend's retries), ``truncated`` (an answer
hit max_new_tokens; a task sets ``drop_truncated = False`` to keep such answers), or whatever the task's
``Drop`` says (``parse_failure``, ``refusal``, ``copy``, ``length``, ``multi_sentence``, ``duplicate`` ...).
An optional token budget stops sending new requests once this invocation's backend calls have used
that many tokens; the run is then marked incomplete and resumes later.

Backend failures: before the first request is sent the backend's pre-flight check runs
(`synthembed.llm.base.preflight`: a dead or misconfigured server fails there, naming URL and cause).
During the run a circuit breaker watches the last ``error_window`` requests sent; when more than
``max_error_rate`` of them failed it stops sending, finishes what is in flight, and the run ends
incomplete with ``stopped`` saying why. Rows dropped as ``backend_error`` are tried again by a run
with ``retry_errors`` into the same folder (`RecordStore` ``retry_reasons``).

Non-LLM generators (the ranked chains, which run multi-round guided decoding on a local model) use
layer (a) directly, or `iter_generations` for cached chat requests.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from synthembed.llm.base import ChatRequest, Generation, LLMBackend, derive_seed, preflight
from synthembed.llm.cache import RequestCache
from synthembed.synthesis.inputs import InputRow, InputSet
from synthembed.synthesis.progress import Progress, format_summary
from synthembed.synthesis.records import RecordStore

__all__ = ["Drop", "LLMTask", "RunOptions", "RunSummary", "iter_generations", "row_rng", "run_task", "two_step"]

logger = logging.getLogger(__name__)


class Drop(Exception):
    """Raised by a task's parse/assemble: this row yields no record, for `reason` (a short snake_case word)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class LLMTask(Protocol):
    """A synthesis method as pure functions (see the module docstring)."""

    name: str
    slots: Sequence[str]

    def config(self) -> dict[str, Any]: ...

    def build_request(self, row: InputRow, rng: random.Random, slot: str) -> ChatRequest: ...

    def parse(self, text: str, row: InputRow, slot: str) -> Any: ...

    def assemble(self, row: InputRow, parsed: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass
class RunOptions:
    """How to run: where to write, how much, which seed, cache, budget, shard size, progress."""

    output: Path
    limit: int | None = None
    seed: int = 0
    token_budget: int | None = None
    shard_size: int = 100
    flush_seconds: float = 30.0
    cache_path: Path | None = None
    retry_errors: bool = False
    overwrite: bool = False
    progress: bool = True
    description: str = ""
    max_error_rate: float = 0.5  # circuit breaker: stop when more than this share of ...
    error_window: int = 20  # ... the last this many requests sent failed

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if not 0 < self.max_error_rate <= 1 or self.error_window < 1:
            raise ValueError("max_error_rate must be in (0, 1] and error_window >= 1")
        if self.cache_path is not None:
            self.cache_path = Path(self.cache_path)


@dataclass
class RunSummary:
    """What a run produced; ``manifest`` is the manifest as written."""

    output: Path
    complete: bool
    counts: Counter
    usage: Counter
    manifest: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return format_summary(self.manifest, title=str(self.output))

    @property
    def stopped(self) -> str:
        """Why the run stopped before the end ('' when it did not)."""
        return str(self.manifest.get("stopped", ""))

    @property
    def backend_errors(self) -> int:
        """Rows dropped because the backend failed (to retry with ``retry_errors``)."""
        return int(self.counts.get("backend_error", 0))


def two_step(first: RunSummary, run_second: Callable[[], RunSummary]) -> RunSummary:
    """The summary of a two-step synthesis (scratch anchors, brainstormed tasks, then the records).

    A first step stopped by the circuit breaker stops there (exit 4, resumable); otherwise the second
    step runs and the first step's ``backend_error`` drops are counted in its summary, so that the
    run exits 4 and ``--retry-errors`` retries them.
    """
    if first.stopped.startswith("circuit breaker"):
        return first
    second = run_second()
    second.counts["backend_error"] += first.backend_errors
    return second


def row_rng(seed: int, task_name: str, row_id: str, slot: str) -> random.Random:
    """The per-request random generator: depends only on the run seed, task, row id and slot."""
    return random.Random(derive_seed(seed, task_name, row_id, slot))


def iter_generations(
    backend: LLMBackend,
    requests: Iterable[ChatRequest],
    cache: RequestCache | None = None,
    *,
    allow: Callable[[], bool] | None = None,
) -> Iterator[Generation]:
    """Yield a Generation per request: cached ones first, then the backend's as they complete.

    Fresh generations are written to the cache as they arrive (transient errors are not). Before the
    first request is sent, the backend's pre-flight check runs. ``allow()`` is asked before each
    request is handed to the backend; when it returns False no further request is sent.
    """
    misses: list[ChatRequest] = []
    for request in requests:
        hit = cache.get(request, backend.model) if cache is not None else None
        if hit is not None:
            yield hit
        else:
            misses.append(request)
    if not misses:
        return
    by_id = {r.id: r for r in misses}
    if len(by_id) != len(misses):
        raise ValueError("request ids must be unique within a run")
    preflight(backend)

    def feed() -> Iterator[ChatRequest]:
        for request in misses:
            if allow is not None and not allow():
                return
            yield request

    for generation in backend.generate(feed()):
        if cache is not None and generation.request_id in by_id:
            cache.put(by_id[generation.request_id], backend.model, generation)
        yield generation


def run_task(
    task: LLMTask,
    rows: InputSet | Sequence[InputRow],
    backend: LLMBackend,
    options: RunOptions,
    *,
    config: Mapping[str, Any] | None = None,
) -> RunSummary:
    """Run `task` over `rows` with `backend`, writing to ``options.output`` (resuming it); see the module docstring."""
    input_set = rows if isinstance(rows, InputSet) else InputSet(list(rows))
    input_set = input_set.head(options.limit)
    full_config = {
        "task": task.name,
        "task_config": task.config(),
        "backend": backend.name,
        "model": backend.model,
        "seed": options.seed,
        "limit": options.limit,
        "token_budget": options.token_budget,
        **(dict(config) if config else {}),
    }
    store = RecordStore(
        options.output,
        full_config,
        shard_size=options.shard_size,
        flush_seconds=options.flush_seconds,
        overwrite=options.overwrite,
        check_keys=("task", "task_config", "backend", "model", "seed"),
        retry_reasons=("backend_error",) if options.retry_errors else (),
    )
    store.extra_counts.update(input_set.skipped)
    pending = [row for row in input_set.rows if row.id not in store.done_ids]
    slots = tuple(task.slots)
    row_by_id = {row.id: row for row in pending}
    requests: list[ChatRequest] = []
    for row in pending:
        for slot in slots:
            request = task.build_request(row, row_rng(options.seed, task.name, row.id, slot), slot)
            requests.append(replace(request, id=f"{row.id}/{slot}"))

    cache = RequestCache(options.cache_path, retry_errors=options.retry_errors) if options.cache_path else None
    spent = 0
    budget = options.token_budget
    stopped = ""

    recent: deque[bool] = deque(maxlen=options.error_window)  # circuit breaker: did each recent request fail
    tripped = ""

    def allow() -> bool:
        return not tripped and (budget is None or spent < budget)

    answers: dict[str, dict[str, Generation]] = {}
    progress = Progress(len(pending), enabled=options.progress, description=options.description or task.name)
    complete = False
    try:
        for generation in iter_generations(backend, requests, cache, allow=allow):
            row_id, _, slot = generation.request_id.rpartition("/")
            if row_id not in row_by_id or slot not in slots:
                raise RuntimeError(f"backend {backend.name} answered an unknown request {generation.request_id!r}")
            tokens = generation.prompt_tokens + generation.completion_tokens
            if not generation.cached:
                spent += tokens
                recent.append(not generation.ok)
                if (not tripped and len(recent) == recent.maxlen
                        and sum(recent) > options.max_error_rate * len(recent)):
                    tripped = (f"circuit breaker: {sum(recent)} of the last {len(recent)} requests failed "
                               f"(more than {options.max_error_rate:.0%}); last error: {generation.error}")
                    logger.warning("%s; sending no more requests", tripped)
            got = answers.setdefault(row_id, {})
            got[slot] = generation
            if len(got) < len(slots):
                continue
            del answers[row_id]
            failed = _finish_row(task, row_by_id[row_id], got, store, slots)
            progress.update(tokens=sum(g.prompt_tokens + g.completion_tokens for g in got.values() if not g.cached),
                            failed=failed, cached=sum(g.cached for g in got.values()))
        complete = len(answers) == 0 and all(row.id in store.done_ids for row in input_set.rows)
        if tripped:
            stopped = tripped
            complete = False
        elif not complete and budget is not None and spent >= budget:
            stopped = f"token budget of {budget} reached ({spent} tokens used by this run)"
    finally:
        progress.close()
        if cache is not None:
            cache.close()
        extra = {"stopped": stopped} if stopped else None
        manifest = store.finish(order=[row.id for row in input_set.rows], complete=complete, extra=extra)
    return RunSummary(options.output, complete, Counter(store.counts), Counter(store.usage), manifest)


def _finish_row(
    task: LLMTask, row: InputRow, got: Mapping[str, Generation], store: RecordStore, slots: Sequence[str]
) -> bool:
    """Parse and assemble one row whose slots are all answered; write a record or a drop. True if dropped."""
    usage = {
        "prompt_tokens": sum(g.prompt_tokens for g in got.values()),
        "completion_tokens": sum(g.completion_tokens for g in got.values()),
        "requests": len(got),
        "cached_requests": sum(int(g.cached) for g in got.values()),
    }
    raw = {slot: got[slot].text for slot in slots}
    errors = {slot: got[slot].error for slot in slots if not got[slot].ok}
    if errors:
        store.drop(row.id, "backend_error", raw=raw, detail="; ".join(f"{s}: {e}" for s, e in errors.items()),
                   meta={"source": row.source, "usage": usage})
        return True
    truncated = [slot for slot in slots if got[slot].finish_reason == "length"]
    if truncated and getattr(task, "drop_truncated", True):
        store.drop(row.id, "truncated", raw=raw, detail=f"max_new_tokens reached in {truncated}",
                   meta={"source": row.source, "usage": usage})
        return True
    try:
        parsed = {slot: task.parse(got[slot].text or "", row, slot) for slot in slots}
        record = task.assemble(row, parsed)
    except Drop as drop:
        store.drop(row.id, drop.reason, raw=raw, detail=drop.detail, meta={"source": row.source, "usage": usage})
        return True
    record = dict(record)
    record.setdefault("id", row.id)
    if record["id"] != row.id:
        raise ValueError(f"task {task.name} changed the record id of row {row.id!r} to {record['id']!r}")
    meta = dict(record.get("meta") or {})
    meta.setdefault("source", row.source)
    meta["finish_reasons"] = {slot: got[slot].finish_reason for slot in slots}
    meta["usage"] = usage
    record["meta"] = meta
    store.add(record)
    return False
