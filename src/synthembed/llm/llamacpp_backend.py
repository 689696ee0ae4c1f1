"""llama.cpp in process as a backend (``--backend llamacpp``; extra ``llamacpp``: ``llama-cpp-python``).

The GGUF file is loaded as it is (quantized weights, no dequantization), so a small model starts in a
fraction of a second and decodes several times faster on CPU than the transformers backend (see
benchmarks/bench_llamacpp.py). Model references: ``embedded`` / ``embedded-llm`` (the packaged
SmolLM2-135M-Instruct) or a ``.gguf`` path.

Requests run one at a time (one llama.cpp context); each is rendered with the chat template stored in
the GGUF file (``chat_format="chat_template.default"``: never a guessed built-in format) and sampled
with only its own temperature and top-p (llama-cpp-python's extra top-k 40 and min-p 0.05 are turned
off, so the knobs mean what they mean in the other backends). Seeds: every request is sampled from its
own seed (0 when it has none), and the context is cleared before each request, so an answer depends on
its request alone, never on what ran before it. Stop strings end the text (not included), EOS gives
``finish_reason="stop"``, ``max_new_tokens`` gives ``"length"``; token counts are llama.cpp's own. A
``response_format`` of type ``json_object`` / ``json_schema`` is honoured with llama.cpp's grammar.
A request that fails (e.g. a prompt longer than ``n_ctx``) comes back as an error naming it.

The model name in the request cache is ``llamacpp:`` plus the GGUF's identity, so answers never mix
with the transformers backend's (different numerics) or another file's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from synthembed.errors import ModelLoadError
from synthembed.llm.base import BackendError, ChatRequest, Generation, json_object_form, truncate_at_stop

__all__ = ["LlamaCppBackend", "require_llama_cpp", "resolve_gguf"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'synthembed[llamacpp]' (builds llama.cpp from source, a few minutes)"


def require_llama_cpp() -> Any:
    """Import and return ``llama_cpp``, or raise a BackendError with the install command."""
    try:
        import llama_cpp
    except ImportError:
        raise BackendError(f"the llamacpp backend needs llama-cpp-python: {INSTALL_HINT}") from None
    return llama_cpp


def resolve_gguf(model: str | Path) -> tuple[Path, str]:
    """(the GGUF file, the stable name that enters the cache key) for ``embedded``/``embedded-llm`` or a .gguf path."""
    from synthembed.models.embedded import EMBEDDED_ENCODER, EMBEDDED_LLM, SMOLLM2_GGUF_NAME, embedded_llm_gguf_path

    reference = str(model)
    if reference in (EMBEDDED_ENCODER, EMBEDDED_LLM):
        return embedded_llm_gguf_path(), f"embedded:{SMOLLM2_GGUF_NAME}"
    path = Path(reference).expanduser()
    if path.suffix.lower() != ".gguf":
        raise ModelLoadError(f"llama.cpp loads GGUF files: give a .gguf path or 'embedded-llm', not {reference!r}")
    if not path.is_file():
        raise ModelLoadError(f"GGUF file not found: {path}")
    return path.resolve(), f"gguf:{path.resolve()}"


class LlamaCppBackend:
    """One GGUF model in a llama.cpp context, answering requests one at a time (see the module docstring)."""

    name = "llamacpp"

    def __init__(
        self,
        model: str | Path = "embedded",
        *,
        n_ctx: int = 4096,
        threads: int | str | None = "auto",
        **_ignored: object,
    ) -> None:
        """``n_ctx``: context length in tokens (prompt + answer); ``threads``: a number, ``auto`` (1 on an
        oversubscribed machine, else llama.cpp's default) or None (llama.cpp's default)."""
        from synthembed.llm.transformers_local import choose_threads

        llama_cpp = require_llama_cpp()
        path, key = resolve_gguf(model)
        self.model = f"llamacpp:{key}"
        self.path = path
        self.n_ctx = int(n_ctx)
        if self.n_ctx < 16:
            raise ValueError(f"n_ctx must be >= 16, got {n_ctx}")
        self.threads = choose_threads(threads)
        thread_options = {} if self.threads is None else {"n_threads": self.threads, "n_threads_batch": self.threads}
        try:
            self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=self.n_ctx, verbose=False, **thread_options)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp cannot load {path}: {exc}") from None
        if "tokenizer.chat_template" not in self.llm.metadata:
            raise ModelLoadError(f"{path} has no chat template (tokenizer.chat_template); the llamacpp backend "
                                 "needs an instruct model")
        self.llm.chat_format = "chat_template.default"  # the GGUF's own template, never a guessed format

    def __repr__(self) -> str:
        return f"LlamaCppBackend(model={self.model!r}, n_ctx={self.n_ctx}, threads={self.threads})"

    def generate(self, requests: Iterable[ChatRequest]) -> Iterator[Generation]:
        for request in requests:
            yield self.answer(request)

    def answer(self, request: ChatRequest) -> Generation:
        """Run one request to completion."""
        if self.llm is None:
            raise BackendError("the llamacpp backend was closed")
        params = request.params
        options: dict[str, Any] = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "max_tokens": params.max_new_tokens,
            "stop": list(params.stop),
            "seed": 0 if params.seed is None else int(params.seed),
        }
        if params.response_format is not None and params.response_format.get("type") in ("json_object", "json_schema"):
            options["response_format"] = json_object_form(params.response_format)
        self.llm.reset()  # no state from the previous request: the answer depends on this request only
        try:
            response = self.llm.create_chat_completion(messages=list(request.messages), **options)
        except (ValueError, RuntimeError) as exc:
            return Generation(request.id, None, f"request {request.id}: llama.cpp failed: {exc}",
                              finish_reason="error")
        choice = response["choices"][0]
        text = choice["message"].get("content") or ""
        text, _ = truncate_at_stop(text, params.stop)
        usage = response.get("usage") or {}
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return Generation(request.id, text.strip(), None, int(usage.get("prompt_tokens") or 0),
                          int(usage.get("completion_tokens") or 0), finish)

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.llm = None

