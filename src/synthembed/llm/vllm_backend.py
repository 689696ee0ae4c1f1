"""vLLM in-process offline batching as a backend (optional: ``pip install 'synthembed[vllm]'``).

All requests pulled from the input in chunks of ``chunk_size`` are handed to ``LLM.chat`` at once
(vLLM schedules them with continuous batching); each keeps its own seed, temperature, top-p,
max_new_tokens and stop strings through a per-request ``vllm.SamplingParams``. Model references are
resolved like the transformers backend's (``embedded``, .gguf, folder, hub id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from synthembed.llm.base import BackendError, ChatRequest, Generation

__all__ = ["VLLMBackend"]


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str | Path = "embedded", *, chunk_size: int = 1024, **engine_options: Any) -> None:
        try:
            import vllm
        except ImportError:
            raise BackendError("the vllm backend needs vLLM: pip install 'synthembed[vllm]'") from None
        from synthembed.llm.transformers_local import resolve_model_folder

        folder, self.model = resolve_model_folder(model)
        engine_options = {k: v for k, v in engine_options.items() if k not in ("batch_size", "dtype", "device")}
        self._vllm = vllm
        self.llm = vllm.LLM(model=folder, **engine_options)
        self.chunk_size = chunk_size

    def generate(self, requests: Iterable[ChatRequest]) -> Iterator[Generation]:
        chunk: list[ChatRequest] = []
        for request in requests:
            chunk.append(request)
            if len(chunk) >= self.chunk_size:
                yield from self._run(chunk)
                chunk = []
        if chunk:
            yield from self._run(chunk)

    def _run(self, chunk: list[ChatRequest]) -> list[Generation]:
        params = [
            self._vllm.SamplingParams(
                temperature=r.params.temperature,
                top_p=r.params.top_p,
                max_tokens=r.params.max_new_tokens,
                seed=r.params.seed,
                stop=list(r.params.stop) or None,
            )
            for r in chunk
        ]
        outputs = self.llm.chat([list(r.messages) for r in chunk], params, use_tqdm=False)
        results = []
        for request, output in zip(chunk, outputs):
            completion = output.outputs[0]
            finish = "length" if completion.finish_reason == "length" else "stop"
            results.append(Generation(request.id, completion.text.strip(), None, len(output.prompt_token_ids or []),
                                      len(completion.token_ids), finish))
        return results

    def close(self) -> None:
        self.llm = None
