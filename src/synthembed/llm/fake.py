"""A deterministic, scripted backend for tests and benchmarks, with injectable failures and latency.

The answer to a request is, in order of precedence: ``script[request.id]`` (a string, or an
Exception / ``FakeFailure`` to fail it), ``responder(request)`` if given, else a deterministic text
derived from the request: the words of the last line of the last user message, shuffled by a hash of
the request (so equal requests get equal answers, and answers look like sentences of the right length). Failures can also be drawn
at a fixed ``failure_rate`` (seeded by the request, so reproducible). ``latency`` (seconds) is slept
per request, or per batch of ``batch_size`` requests to mimic a batched local model.
``calls`` records the ids of every request it answered, so tests can check what reached it.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from synthembed.llm.base import ChatRequest, Generation, truncate_at_stop

__all__ = ["FakeBackend", "FakeFailure"]


@dataclass(frozen=True)
class FakeFailure:
    """Scripted failure: the generation comes back with this error message."""

    message: str = "injected failure"


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        model: str = "fake-model",
        *,
        script: Mapping[str, str | FakeFailure | BaseException] | None = None,
        responder: Callable[[ChatRequest], str] | None = None,
        failure_rate: float = 0.0,
        latency: float = 0.0,
        batch_size: int = 1,
        **_ignored: object,
    ) -> None:
        self.model = model
        self.script = dict(script or {})
        self.responder = responder
        self.failure_rate = failure_rate
        self.latency = latency
        self.batch_size = max(1, int(batch_size))
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def generate(self, requests: Iterable[ChatRequest]) -> Iterator[Generation]:
        batch: list[ChatRequest] = []
        for request in requests:
            batch.append(request)
            if len(batch) >= self.batch_size:
                yield from self._run_batch(batch)
                batch = []
        if batch:
            yield from self._run_batch(batch)

    def _run_batch(self, batch: list[ChatRequest]) -> Iterator[Generation]:
        if self.latency:
            time.sleep(self.latency)
        for request in batch:
            yield self.answer(request)

    def answer(self, request: ChatRequest) -> Generation:
        """The (deterministic) generation for one request."""
        with self._lock:
            self.calls.append(request.id)
        prompt_tokens = sum(len(m["content"].split()) for m in request.messages)
        scripted = self.script.get(request.id)
        if isinstance(scripted, BaseException):
            raise scripted
        if isinstance(scripted, FakeFailure):
            return Generation(request.id, None, scripted.message, prompt_tokens, 0, "error")
        digest = hashlib.sha256(repr((request.messages, request.params.seed)).encode()).hexdigest()
        if self.failure_rate and random.Random(digest).random() < self.failure_rate:
            return Generation(request.id, None, "injected random failure", prompt_tokens, 0, "error")
        if isinstance(scripted, str):
            text = scripted
        elif self.responder is not None:
            text = self.responder(request)
        else:
            text = _shuffled_last_line(request, digest)
        text, stopped = truncate_at_stop(text, request.params.stop)
        text = text.strip()  # as every backend: no whitespace left before a stop string
        words = text.split()
        finish = "stop"
        if len(words) > request.params.max_new_tokens:
            text, finish = " ".join(words[: request.params.max_new_tokens]), "length"
        return Generation(request.id, text, None, prompt_tokens, len(text.split()), finish)

    def close(self) -> None:
        pass


def _shuffled_last_line(request: ChatRequest, digest: str) -> str:
    users = [m["content"] for m in request.messages if m["role"] == "user"]
    lines = [line for line in (users[-1] if users else "").splitlines() if line.strip()]
    last = lines[-1] if lines else "empty"
    if last.lower().startswith("sentence:"):
        last = last.split(":", 1)[1]
    words = last.split() or ["empty"]
    random.Random(digest).shuffle(words)
    text = " ".join(words)
    return text[:1].upper() + text[1:]
