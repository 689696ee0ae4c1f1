"""LLM backends behind one protocol (`synthembed.llm.base`), created by name with `create_backend`.

Backends: ``openai`` (any OpenAI-compatible server, async with bounded concurrency and retries),
``transformers`` (a local Hugging Face causal LM, batched), ``llamacpp`` (a GGUF file in llama.cpp,
in process, optional extra ``llamacpp``) and ``fake`` (deterministic, scripted, for tests and benchmarks).
Heavy libraries load only when a backend is created. vLLM is used as a server (``vllm serve MODEL``)
behind ``openai``: docs/gpu.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from synthembed.llm.base import (
    BackendError,
    ChatRequest,
    Generation,
    LLMBackend,
    Message,
    SamplingParams,
    derive_seed,
)

__all__ = [
    "BACKENDS",
    "BackendError",
    "ChatRequest",
    "Generation",
    "LLMBackend",
    "Message",
    "SamplingParams",
    "create_backend",
    "derive_seed",
]

# name -> "module:class"; imported on use so `import synthembed.llm` stays light.
BACKENDS: dict[str, str] = {
    "openai": "synthembed.llm.openai_compat:OpenAIBackend",
    "transformers": "synthembed.llm.transformers_local:TransformersBackend",
    "llamacpp": "synthembed.llm.llamacpp_backend:LlamaCppBackend",
    "fake": "synthembed.llm.fake:FakeBackend",
}


def create_backend(name: str, **options: Any) -> LLMBackend:
    """Create the backend registered as `name` with its keyword options (see each backend's class)."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)
