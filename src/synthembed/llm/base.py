"""The one small protocol every LLM backend speaks: chat requests in, generations out.

A backend takes an iterable of `ChatRequest`s (pulled lazily, so a caller can stop feeding it, e.g.
when a token budget is spent) and yields one `Generation` per request *as it completes* (not
necessarily in input order; match them by ``request_id``). A request that fails after the backend's
own retries yields a `Generation` whose ``error`` is set and ``text`` is None; only failures that make
every further request pointless (bad API key, unknown model) raise `BackendError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from synthembed.errors import SynthEmbedError

__all__ = [
    "BackendError",
    "ChatRequest",
    "Generation",
    "LLMBackend",
    "Message",
    "SamplingParams",
    "derive_seed",
    "preflight",
]

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


class BackendError(SynthEmbedError):
    """A backend failure that stops the run (bad key, unknown model, missing optional package)."""


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one request.

    ``seed`` makes sampling reproducible per request (backends that support it honour it regardless
    of which other requests share a batch); ``stop`` strings end the text (they are not included);
    ``response_format`` is passed through to OpenAI-compatible servers (e.g. ``{"type": "json_object"}``)
    and ignored by local backends.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int | None = None
    stop: tuple[str, ...] = ()
    response_format: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if isinstance(self.stop, list):  # accept lists, keep the dataclass hashable
            object.__setattr__(self, "stop", tuple(self.stop))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop"] = list(self.stop)
        return out


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to run: a caller-chosen unique ``id``, the messages, the sampling params."""

    id: str
    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)

    def __post_init__(self) -> None:
        messages = tuple(dict(m) for m in self.messages)
        for i, message in enumerate(messages):
            if set(message) != {"role", "content"} or not isinstance(message["content"], str):
                raise ValueError(f"request {self.id!r}: message {i} must be {{'role', 'content': str}}, got {message!r}")
            if message["role"] not in ("system", "user", "assistant"):
                raise ValueError(f"request {self.id!r}: message {i} has unknown role {message['role']!r}")
        object.__setattr__(self, "messages", messages)

    def cache_key(self, model: str) -> str:
        """Hash of (model, messages, params): equal payloads share an answer, whatever their ids."""
        payload = {"model": model, "messages": list(self.messages), "params": self.params.to_dict()}
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class Generation:
    """The answer to one request: ``text`` (None on failure) or ``error``, with token counts.

    ``finish_reason`` is ``stop`` (end of text or a stop string), ``length`` (max_new_tokens hit) or
    ``error``; ``cached`` is True when the answer came from the request cache, not the backend.
    ``transient`` marks an error of the connection or the server (refused, timeout, 5xx, cut answer)
    rather than of the request: such errors are never cached, so a later run sends the request again.
    """

    request_id: str
    text: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    cached: bool = False
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@runtime_checkable
class LLMBackend(Protocol):
    """What the runner needs from a backend (see the module docstring for the contract)."""

    name: str  # "openai", "transformers", "fake"
    model: str  # the model as it enters the cache key (server model name, folder path, ...)

    def generate(self, requests: Iterable[ChatRequest]) -> Iterator[Generation]:
        """Yield one Generation per request, as each completes."""
        ...

    def close(self) -> None:
        """Release clients, threads, models."""
        ...


def preflight(backend: LLMBackend) -> None:
    """Ask a backend that talks to a server to check it can be used (``backend.preflight()``, if it
    has one) before any request of a run is sent: raises `BackendError` naming the URL and the cause."""
    check = getattr(backend, "preflight", None)
    if callable(check):
        check()


def derive_seed(*parts: object, bits: int = 31) -> int:
    """A stable integer seed from any parts (run seed, row id, slot): the same on every machine and run."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") % (1 << bits)


def truncate_at_stop(text: str, stop: Iterable[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop string; return (text, whether a stop string was found)."""
    cut = len(text)
    for s in stop:
        if s:
            index = text.find(s)
            if index != -1:
                cut = min(cut, index)
    return text[:cut], cut < len(text)


def json_object_form(response_format: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``{"type": "json_schema", "json_schema": {"schema": S}}`` as ``{"type": "json_object", "schema": S}``.

    The form llama.cpp's Python bindings and server take (they reject ``json_schema``); others pass unchanged.
    """
    if response_format.get("type") != "json_schema":
        return dict(response_format)
    schema = (response_format.get("json_schema") or {}).get("schema")
    return {"type": "json_object", **({"schema": schema} if schema else {})}
