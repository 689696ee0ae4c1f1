"""A local Hugging Face causal LM as a backend: batched, left-padded, chat-templated, seeded per request.

Model references: a folder, a hub id, a ``.gguf`` file (dequantized once and cached, see
`synthembed.models.gguf`), or ``embedded`` / ``embedded-llm`` (the packaged SmolLM2-135M-Instruct).

Batching: requests are pulled from the input in groups of ``batch_size``, rendered with the model's
chat template, left-padded and decoded together by ``generate``; each row stops on its own (EOS, its
own ``max_new_tokens``, the batch's stop strings).

Per-request seeding: sampling is done by `PerRequestSampler`, a ``LogitsProcessor`` that draws each
row's next token with that row's own ``torch.Generator`` (seeded from ``SamplingParams.seed``) and
returns scores that make greedy decoding pick exactly that token. A row's random stream therefore
depends only on its own seed and its own tokens, never on which requests share its batch or their
order. (Left padding changes the floating-point sums of attention slightly, so in rare near-ties a
token can still differ between batch compositions; the random draws themselves never do.)

Threads ``auto``: one torch thread when the machine is oversubscribed (1-minute load average at or
above the CPU count), else torch's default. Measured on this project's shared 2-core machine at load
~10-15 (SmolLM2-135M, batch 4 x 500-token prompts): 2 threads took 61-91 s per prefill and 6.7-13 s
per decoding step, 1 thread 26-73 s and 0.3-0.5 s: spinning OpenMP workers lose badly to other
processes' load.

dtype ``auto``: float32 on CPU, bfloat16 on CUDA devices that support it. Measured on this project's
CPU (avx512_bf16, 1 thread, load ~11): a 2 x 500-token prefill took 6.7-7.8 s in bfloat16 against
20.8-22.6 s in float32 (a decoding step 0.52-0.54 s against 0.41-0.54 s), so ``--dtype bfloat16`` is
~3x faster on prompt-heavy requests such as SynCSE's 5-shot prompts. It is not the default because
bfloat16 logits move with the batch's padding and shape: in benchmarks/bench_local_batching.py,
batched and one-at-a-time sampling gave identical texts for 8/8 requests in float32 and 0/8 in
bfloat16, so a bfloat16 run resumed after a kill can differ from an uninterrupted one. A dtype other
than float32 is part of the backend's ``model`` name (``...@bfloat16``), so cached answers never mix
precisions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from synthembed.errors import ModelLoadError
from synthembed.llm.base import ChatRequest, Generation, truncate_at_stop

__all__ = ["PerRequestSampler", "TransformersBackend", "choose_threads", "resolve_model_folder"]

logger = logging.getLogger(__name__)


def resolve_model_folder(model: str | Path) -> tuple[str, str]:
    """(what to pass to from_pretrained, the stable name that enters the cache key) for a model reference."""
    from synthembed.models.embedded import EMBEDDED_ENCODER, EMBEDDED_LLM, SMOLLM2_GGUF_NAME, embedded_llm_gguf_path
    from synthembed.models.gguf import dequantized_folder

    reference = str(model)
    if reference in (EMBEDDED_ENCODER, EMBEDDED_LLM):
        return str(dequantized_folder(embedded_llm_gguf_path())), f"embedded:{SMOLLM2_GGUF_NAME}"
    path = Path(reference).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return str(dequantized_folder(path)), f"gguf:{path.resolve()}"
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path.resolve()), str(path.resolve())
    if reference.startswith((".", "/", "~")) or reference.count("/") > 1:
        raise ModelLoadError(f"model path does not exist: {reference}")
    return reference, reference  # hub id


def cpu_has_bf16() -> bool:
    """True when the CPU advertises native bfloat16 arithmetic (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def choose_threads(threads: int | str | None) -> int | None:
    """Torch CPU threads to use: an int, None (torch's default) or "auto" (see the module docstring)."""
    if threads is None or threads == "default":
        return None
    if threads == "auto":
        import os

        cpus = os.cpu_count() or 1
        try:
            load = os.getloadavg()[0]
        except OSError:
            return None
        return 1 if load >= cpus else None
    value = int(threads)
    if value < 1:
        raise ValueError(f"threads must be >= 1, got {value}")
    return value


class PerRequestSampler:
    """LogitsProcessor: sample each row with its own generator, temperature and top-p (see module doc).

    Rows with temperature 0 are greedy. Sampling is by inverse CDF over the nucleus: one uniform draw
    from the row's generator per step, so the row's random stream depends on nothing else. The nucleus
    is found with a top-k that widens until it holds ``top_p`` of the mass (a full sort of the 49k-token
    vocabulary per row and step costs more than the model's own decoding step on a small CPU). The
    returned scores are 0 at the chosen token and -inf elsewhere, so ``generate(do_sample=False)``
    keeps exactly the sampled token.
    """

    FIRST_K = 64

    def __init__(self, temperatures: Sequence[float], top_ps: Sequence[float], seeds: Sequence[int | None]) -> None:
        import torch

        self.temperatures = list(temperatures)
        self.top_ps = list(top_ps)
        self.generators = []
        for seed in seeds:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(0 if seed is None else int(seed))
            self.generators.append(generator)

    def __call__(self, input_ids, scores):  # input_ids (batch, seq); scores (batch, vocab)
        import torch

        rows, vocab = scores.shape
        logits = scores.detach().float().cpu()  # (batch, vocab)
        temperatures = torch.tensor([t if t > 0 else 1.0 for t in self.temperatures])  # (batch,)
        probs = torch.softmax(logits / temperatures[:, None], dim=-1)  # (batch, vocab)
        k = min(self.FIRST_K, vocab)
        top_vals, top_idx = torch.topk(probs, k, dim=-1)  # (batch, k) each, descending
        chosen = torch.empty(rows, dtype=torch.long)  # (batch,)
        for row in range(rows):
            if self.temperatures[row] <= 0:
                chosen[row] = top_idx[row, 0]
                continue
            top_p = self.top_ps[row]
            if top_p >= 1.0:  # plain sampling over the whole vocabulary
                vals, idx = probs[row], torch.arange(vocab)  # (vocab,)
            else:
                vals, idx = top_vals[row], top_idx[row]  # (k,)
                width = k
                while float(vals.sum()) < top_p and width < vocab:  # nucleus wider than the top-k: widen
                    width = min(vocab, width * 8)
                    vals, idx = torch.topk(probs[row], width)
                mass_before = torch.cumsum(vals, dim=0) - vals  # (width,)
                keep = mass_before < top_p  # the smallest prefix reaching top_p
                vals, idx = vals[keep], idx[keep]
            cdf = torch.cumsum(vals, dim=0)  # (n_keep,)
            draw = torch.rand(1, generator=self.generators[row]) * cdf[-1]
            position = min(int(torch.searchsorted(cdf, draw)), len(idx) - 1)
            chosen[row] = idx[position]
        out = torch.full_like(scores, float("-inf"))  # (batch, vocab)
        out[torch.arange(rows), chosen.to(scores.device)] = 0.0
        return out


class _RowLimits:
    """StoppingCriteria: row i is done once it has ``limits[i]`` new tokens (per-request max_new_tokens)."""

    def __init__(self, prompt_width: int, limits: Sequence[int]) -> None:
        self.prompt_width = prompt_width
        self.limits = limits

    def __call__(self, input_ids, scores, **kwargs):  # -> (batch,) bool
        import torch

        produced = input_ids.shape[1] - self.prompt_width
        return torch.tensor([produced >= limit for limit in self.limits], device=input_ids.device)


class TransformersBackend:
    """Batched local generation with a Hugging Face causal LM (see the module docstring)."""

    name = "transformers"

    def __init__(
        self,
        model: str | Path = "embedded",
        *,
        batch_size: int = 8,
        dtype: str = "auto",
        device: str | None = None,
        threads: int | str | None = "auto",
        logits_processor_factory: Callable[[TransformersBackend, Sequence[ChatRequest]], Any] | None = None,
        **_ignored: object,
    ) -> None:
        """``logits_processor_factory(backend, batch)`` may return a LogitsProcessor run before the
        sampler for that batch (e.g. JSON-schema constrained decoding for requests with a
        ``response_format``), or None."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.threads = choose_threads(threads)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        folder, self.model = resolve_model_folder(model)
        self.batch_size = batch_size
        self.logits_processor_factory = logits_processor_factory
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = self._choose_dtype(dtype)
        if self.dtype != torch.float32:
            self.model = f"{self.model}@{str(self.dtype).removeprefix('torch.')}"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.lm = AutoModelForCausalLM.from_pretrained(folder, dtype=self.dtype)
        except OSError as exc:
            raise ModelLoadError(f"cannot load causal LM {model!r}: {exc}") from None
        self.lm.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelLoadError(f"{model!r} has no chat template; the transformers backend needs an instruct model")

    def _choose_dtype(self, dtype: str):
        import torch

        if dtype == "auto":
            if self.device.type == "cuda":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
            if self.device.type == "cpu" and cpu_has_bf16():
                logger.info("this CPU has native bfloat16: --dtype bfloat16 is ~3x faster on long prompts, but "
                            "outputs then depend slightly on batch composition (float32 kept)")
            return torch.float32  # exact batch independence; see the module docstring for bfloat16
        try:
            return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                    "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None

    def render(self, request: ChatRequest) -> list[int]:
        """Token ids of the request's messages in the chat template, ready for the assistant's answer."""
        text = self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests: Iterable[ChatRequest]) -> Iterator[Generation]:
        batch: list[ChatRequest] = []
        for request in requests:
            batch.append(request)
            if len(batch) >= self.batch_size:
                yield from self.generate_batch(batch)
                batch = []
        if batch:
            yield from self.generate_batch(batch)

    def generate_batch(self, batch: Sequence[ChatRequest]) -> list[Generation]:
        """Decode one batch together; one Generation per request, in order."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        prompts = [self.render(r) for r in batch]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (batch, width), left-padded
        attention = torch.zeros((len(batch), width), dtype=torch.long)  # (batch, width)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        limits = [r.params.max_new_tokens for r in batch]
        stops = sorted({s for r in batch for s in r.params.stop if s})
        config = GenerationConfig(
            max_new_tokens=max(limits),
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=self.lm.generation_config.eos_token_id or self.tokenizer.eos_token_id,
            stop_strings=stops or None,
        )
        sampler = PerRequestSampler([r.params.temperature for r in batch], [r.params.top_p for r in batch],
                                    [r.params.seed for r in batch])
        extra = []
        if self.logits_processor_factory is not None:
            processor = self.logits_processor_factory(self, batch)
            if processor is not None:
                extra.append(processor)
        started = time.monotonic()
        with torch.inference_mode():
            output = self.lm.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
                logits_processor=LogitsProcessorList([*extra, sampler]),
                stopping_criteria=StoppingCriteriaList([_RowLimits(width, limits)]),
                tokenizer=self.tokenizer if stops else None,
            )
        logger.debug("batch of %d decoded in %.2fs", len(batch), time.monotonic() - started)
        new_tokens = output[:, width:].cpu()  # (batch, generated)
        eos_ids = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
        results = []
        for row, request in enumerate(batch):
            ids = new_tokens[row].tolist()[: limits[row]]
            finish = "length"
            for position, token in enumerate(ids):
                if token in eos_ids:
                    ids, finish = ids[:position], "stop"
                    break
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            text, stopped = truncate_at_stop(text, request.params.stop)
            if stopped:
                finish = "stop"
            results.append(Generation(request.id, text.strip(), None, len(prompts[row]), len(ids), finish))
        return results

    def close(self) -> None:
        self.lm = None
