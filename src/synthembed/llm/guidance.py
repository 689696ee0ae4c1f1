"""Batched classifier-free guidance (CFG) decoding for local Hugging Face causal LMs.

Next-token scores are ``l = l_neg + gamma * (l_pos - l_neg)`` on log-probabilities, exactly what
transformers' ``UnbatchedClassifierFreeGuidanceLogitsProcessor`` computes for
``generate(guidance_scale=gamma, negative_prompt_ids=...)``. The reference runs one conditional
and one negative forward pass per step for a single prompt; here the conditional and the negative
prompts of many requests are rows of ONE left-padded batch with their own key/value caches
(attention masks + explicit position ids), all advanced together, each row stopping on its own.
Finished requests are dropped from the batch (and their cache rows) so the batch shrinks as rows end.

Requests without a negative prompt (or ``gamma == 1``) decode plainly from the raw logits, like
``generate`` does when no guidance processor is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from synthembed.compat import cache_keyword, repeat_cache_rows, returned_cache, select_cache_rows

__all__ = ["GuidedRequest", "GuidedOutput", "GuidanceParams", "guided_generate", "left_pad", "load_causal_lm"]


@dataclass(frozen=True)
class GuidedRequest:
    """One generation: token ids of the conditional prompt, and of the negative prompt (or None)."""

    prompt_ids: Sequence[int]
    negative_ids: Sequence[int] | None = None
    seed: int | None = None  # per-request sampling seed (reproducible regardless of batch mates)


@dataclass(frozen=True)
class GuidanceParams:
    """Decoding settings shared by a batch; ``do_sample=False`` is greedy (the method's default)."""

    guidance_scale: float = 1.5
    max_new_tokens: int = 100
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0


@dataclass
class GuidedOutput:
    """New token ids of one request (eos included when it stopped on one) and why it stopped."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # "stop" (an eos token) or "length" (max_new_tokens reached)


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(ids, attention_mask)``, both ``(rows, max_len)`` long tensors."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq) == 0:
            raise ValueError(f"request {row} has an empty prompt")
        ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return ids, mask


def _common_prefix_len(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all rows."""
    first, n = rows[0], min(len(r) for r in rows)
    for i in range(n):
        t = first[i]
        if any(r[i] != t for r in rows):
            return i
    return n


def _guided_scores(
    logits: torch.Tensor, cond_rows: torch.Tensor, neg_rows: torch.Tensor, has_neg: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Scores per active request, ``(n_req, vocab)``.

    Guided requests get ``gamma * (lp_pos - lp_neg) + lp_neg`` (same operation order as transformers);
    unguided ones keep raw logits (what plain ``generate`` argmaxes / samples from).
    """
    pos = logits[cond_rows]  # (n_req, vocab)
    if not bool(has_neg.any()):
        return pos
    scores = pos.clone()
    guided = has_neg.nonzero(as_tuple=True)[0]  # (n_guided,)
    lp_pos = torch.log_softmax(pos[guided], dim=-1)  # (n_guided, vocab)
    lp_neg = torch.log_softmax(logits[neg_rows[guided]], dim=-1)  # (n_guided, vocab)
    scores[guided] = gamma * (lp_pos - lp_neg) + lp_neg
    return scores


def _sample(scores: torch.Tensor, params: GuidanceParams, generators: list[torch.Generator]) -> torch.Tensor:
    """Temperature / top-k / top-p sampling, one draw per row from that row's own generator; ``(n,)``."""
    scores = scores / max(params.temperature, 1e-6)  # (n, vocab)
    if params.top_k > 0:
        kth = torch.topk(scores, min(params.top_k, scores.shape[-1]), dim=-1).values[:, -1:]  # (n, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)  # (n, vocab)
        cum = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_scores, dim=-1) > params.top_p  # keep the first token always
        sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
    probs = torch.softmax(scores, dim=-1)  # (n, vocab)
    return torch.stack([torch.multinomial(probs[i], 1, generator=generators[i])[0] for i in range(len(probs))])


@torch.inference_mode()
def guided_generate(
    model: torch.nn.Module,
    requests: Sequence[GuidedRequest],
    params: GuidanceParams,
    *,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    share_prefix: bool = True,
) -> list[GuidedOutput]:
    """Decode all `requests` together; returns one `GuidedOutput` per request, in order.

    Rows: every request's conditional prompt, then the negative prompts of guided requests; one
    forward per step over the still-active rows, caches pruned as requests finish.

    With `share_prefix`, the longest token prefix common to all rows (chat template + instruction:
    most of a chain prompt) is run once and its cache copied to every row; the rows' own suffixes
    follow, left-padded inside the suffix region (mask holes + explicit position ids).
    """
    if not requests:
        return []
    device = next(model.parameters()).device
    gamma = float(params.guidance_scale)
    guided_flags = [r.negative_ids is not None and gamma != 1.0 for r in requests]
    n_req = len(requests)
    prompts = [list(r.prompt_ids) for r in requests]
    neg_of: list[int] = [-1] * n_req  # row index of each request's negative prompt
    for i, r in enumerate(requests):
        if guided_flags[i]:
            neg_of[i] = len(prompts)
            prompts.append(list(r.negative_ids or []))
    from transformers import DynamicCache

    cache_kw = cache_keyword(model)  # "cache" (transformers >= 5.25) or "past_key_values"
    cache = DynamicCache()
    prefix = _common_prefix_len(prompts) if share_prefix and len(prompts) > 1 else 0
    prefix = min(prefix, min(len(p) for p in prompts) - 1)  # every row keeps >= 1 token of its own
    if prefix > 0:
        shared = torch.tensor([prompts[0][:prefix]], device=device)  # (1, prefix)
        cache = returned_cache(model(input_ids=shared, use_cache=True, **{cache_kw: cache}))
        repeat_cache_rows(cache, len(prompts))
    ids, suffix_mask = left_pad([p[prefix:] for p in prompts], pad_token_id)  # (rows, width)
    ids, suffix_mask = ids.to(device), suffix_mask.to(device)
    mask = torch.cat([torch.ones(len(prompts), prefix, dtype=torch.long, device=device), suffix_mask], 1)
    positions = prefix + (suffix_mask.cumsum(-1) - 1).clamp(min=0)  # (rows, width)

    cond_rows = torch.arange(n_req, device=device)  # (n_active,) row of each active request
    neg_rows = torch.tensor([max(j, 0) for j in neg_of], device=device)  # (n_active,)
    has_neg = torch.tensor(guided_flags, device=device)  # (n_active,)
    active = list(range(n_req))  # request index of each active slot
    eos = torch.tensor(sorted(set(eos_token_ids)), device=device)
    generators = []
    if params.do_sample:
        for r in requests:
            g = torch.Generator(device="cpu")
            g.manual_seed(r.seed if r.seed is not None else torch.seed())
            generators.append(g)
    outputs = [GuidedOutput() for _ in requests]
    step_ids = ids
    for _step in range(params.max_new_tokens):
        out = model(
            input_ids=step_ids, attention_mask=mask, position_ids=positions, use_cache=True, **{cache_kw: cache}
        )
        cache = returned_cache(out)
        logits = out.logits[:, -1, :].float()  # (rows, vocab)
        scores = _guided_scores(logits, cond_rows, neg_rows, has_neg, gamma)  # (n_active, vocab)
        if params.do_sample:
            tokens = _sample(scores, params, [generators[i] for i in active]).to(device)  # (n_active,)
        else:
            tokens = scores.argmax(dim=-1)  # (n_active,)
        finished = torch.isin(tokens, eos)  # (n_active,)
        for slot, req in enumerate(active):
            outputs[req].token_ids.append(int(tokens[slot]))
            if finished[slot]:
                outputs[req].finish_reason = "stop"
        if bool(finished.all()):
            break
        # next step input: each row gets its request's token (negative rows copy the conditional's)
        rows = mask.shape[0]
        row_tokens = torch.full((rows,), pad_token_id, dtype=torch.long, device=device)
        row_tokens[cond_rows] = tokens
        row_tokens[neg_rows[has_neg]] = tokens[has_neg]
        next_pos = positions[:, -1] + 1  # (rows,)
        if bool(finished.any()):
            keep = (~finished).nonzero(as_tuple=True)[0]  # (n_keep,) slots that continue
            keep_rows = torch.cat([cond_rows[keep], neg_rows[keep][has_neg[keep]]])  # (new_rows,)
            select_cache_rows(cache, keep_rows)
            mask, row_tokens, next_pos = mask[keep_rows], row_tokens[keep_rows], next_pos[keep_rows]
            n_keep = len(keep)
            new_has_neg = has_neg[keep]
            new_neg = torch.zeros(n_keep, dtype=torch.long, device=device)
            new_neg[new_has_neg] = torch.arange(n_keep, n_keep + int(new_has_neg.sum()), device=device)
            cond_rows = torch.arange(n_keep, device=device)
            neg_rows, has_neg = new_neg, new_has_neg
            active = [active[int(s)] for s in keep]
        step_ids = row_tokens[:, None]  # (rows, 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (rows, width + t + 1)
        positions = next_pos[:, None]  # (rows, 1)
    return outputs


def load_causal_lm(reference: str, *, dtype: str = "float32", device: str | None = None):
    """``(model, tokenizer)`` for guided decoding: 'embedded'/'embedded-llm' (packaged SmolLM2), a
    .gguf file (dequantized once, cached), a Hugging Face folder or a hub id. The tokenizer gets a pad
    token (eos) when it has none; the model is in eval mode."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthembed.errors import ModelLoadError
    from synthembed.models.embedded import embedded_llm_gguf_path
    from synthembed.models.gguf import dequantized_folder

    if reference in ("embedded", "embedded-llm"):
        folder: str = str(dequantized_folder(embedded_llm_gguf_path()))
    elif reference.endswith(".gguf"):
        if not Path(reference).is_file():
            raise ModelLoadError(f"GGUF file not found: {reference}")
        folder = str(dequantized_folder(Path(reference)))
    else:
        folder = reference
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if torch_dtype is None:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load causal LM {reference!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
