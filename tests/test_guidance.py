"""Batched CFG decoding against transformers' own guided `generate` (the reference)."""

from __future__ import annotations

import pytest
import torch

from synthembed.llm.guidance import GuidedRequest, GuidanceParams, guided_generate, left_pad

PROMPTS = [
    "Rewrite: the cat sat on the mat.",
    "A man is playing a guitar on the stage tonight.",
    "Hi",
    "Two dogs run across a snowy field while children watch.",
    "The committee postponed its decision until next spring because of the budget.",
]


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    return model, tokenizer


def _reference(model, prompt_ids, negative_ids, gamma, max_new, eos_id):
    """transformers' guided generate, one chain at a time (batch 1, no padding)."""
    kwargs = {}
    if negative_ids is not None and gamma != 1:
        kwargs = {"guidance_scale": gamma, "negative_prompt_ids": torch.tensor([negative_ids])}
    out = model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        **kwargs,
    )
    return out[0, len(prompt_ids) :].tolist()


def _eos_from_top(model, tokenizer) -> int:
    """A token the random model actually emits early, used as eos so that rows stop at different steps."""
    ids = tokenizer(PROMPTS[0])["input_ids"]
    out = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, pad_token_id=0)
    return int(out[0, -3])


@pytest.mark.parametrize("gamma", [1.5, 3.0, 0.5])
def test_guided_matches_hf_reference(tiny_lm, gamma):
    model, tokenizer = tiny_lm
    enc = [tokenizer(p)["input_ids"] for p in PROMPTS]
    negs = [enc[(i + 1) % len(enc)] for i in range(len(enc))]
    negs[2] = None  # one unguided row mixed into the batch
    requests = [GuidedRequest(p, n) for p, n in zip(enc, negs, strict=True)]
    eos_id = tokenizer.eos_token_id
    outs = guided_generate(
        model, requests, GuidanceParams(guidance_scale=gamma, max_new_tokens=12), eos_token_ids=[eos_id], pad_token_id=eos_id
    )
    for req, out in zip(requests, outs, strict=True):
        ref = _reference(model, list(req.prompt_ids), req.negative_ids and list(req.negative_ids), gamma, 12, eos_id)
        assert out.token_ids == ref


@pytest.mark.parametrize("share_prefix", [True, False])
def test_shared_prefix_matches_reference(tiny_lm, share_prefix):
    """Chat-style prompts share a long prefix; computing it once must not change the greedy output."""
    model, tokenizer = tiny_lm
    head = tokenizer("System: you rewrite sentences. User: rewrite this one please:")["input_ids"]
    enc = [head + tokenizer(" " + p)["input_ids"] for p in PROMPTS]
    requests = [GuidedRequest(p, enc[(i + 1) % len(enc)]) for i, p in enumerate(enc)]
    requests[3] = GuidedRequest(enc[3])  # an unguided row too
    eos_id = tokenizer.eos_token_id
    outs = guided_generate(
        model, requests, GuidanceParams(guidance_scale=1.5, max_new_tokens=10), eos_token_ids=[eos_id],
        pad_token_id=eos_id, share_prefix=share_prefix,
    )
    for req, out in zip(requests, outs, strict=True):
        neg = None if req.negative_ids is None else list(req.negative_ids)
        assert out.token_ids == _reference(model, list(req.prompt_ids), neg, 1.5, 10, eos_id)


@pytest.mark.parametrize("head", ["", "System: rewrite. User:"])
def test_rows_stop_independently(tiny_lm, head):
    """With an eos that some rows emit early, those rows stop and the rest still match the reference."""
    model, tokenizer = tiny_lm
    eos_id = _eos_from_top(model, tokenizer)
    enc = [tokenizer(head + p)["input_ids"] for p in PROMPTS]
    requests = [GuidedRequest(p, enc[(i + 2) % len(enc)]) for i, p in enumerate(enc)]
    outs = guided_generate(
        model, requests, GuidanceParams(guidance_scale=1.5, max_new_tokens=10), eos_token_ids=[eos_id], pad_token_id=0
    )
    assert any(o.finish_reason == "stop" for o in outs)
    for req, out in zip(requests, outs, strict=True):
        ref = _reference(model, list(req.prompt_ids), list(req.negative_ids), 1.5, 10, eos_id)
        assert out.token_ids == ref
        if out.finish_reason == "stop":
            assert out.token_ids[-1] == eos_id and out.token_ids.count(eos_id) == 1


def test_gamma_one_equals_plain_decoding(tiny_lm):
    model, tokenizer = tiny_lm
    enc = [tokenizer(p)["input_ids"] for p in PROMPTS]
    eos_id = tokenizer.eos_token_id
    params = GuidanceParams(guidance_scale=1.0, max_new_tokens=10)
    guided = guided_generate(
        model, [GuidedRequest(p, enc[0]) for p in enc], params, eos_token_ids=[eos_id], pad_token_id=eos_id
    )
    plain = guided_generate(model, [GuidedRequest(p) for p in enc], params, eos_token_ids=[eos_id], pad_token_id=eos_id)
    assert [o.token_ids for o in guided] == [o.token_ids for o in plain]
    for p, o in zip(enc, plain, strict=True):
        assert o.token_ids == _reference(model, p, None, 1.0, 10, eos_id)


def test_guidance_changes_output(tiny_lm):
    """A strong negative prompt must change at least one greedy continuation (the test can fail)."""
    model, tokenizer = tiny_lm
    enc = [tokenizer(p)["input_ids"] for p in PROMPTS]
    eos_id = tokenizer.eos_token_id
    plain = guided_generate(model, [GuidedRequest(p) for p in enc], GuidanceParams(max_new_tokens=8), eos_token_ids=[eos_id], pad_token_id=eos_id)
    guided = guided_generate(
        model,
        [GuidedRequest(p, enc[(i + 1) % 5]) for i, p in enumerate(enc)],
        GuidanceParams(guidance_scale=4.0, max_new_tokens=8),
        eos_token_ids=[eos_id],
        pad_token_id=eos_id,
    )
    assert [o.token_ids for o in plain] != [o.token_ids for o in guided]


def test_sampling_reproducible_per_request_seed(tiny_lm):
    model, tokenizer = tiny_lm
    enc = [tokenizer(p)["input_ids"] for p in PROMPTS]
    eos_id = tokenizer.eos_token_id
    params = GuidanceParams(guidance_scale=1.5, max_new_tokens=8, do_sample=True, temperature=1.0, top_p=0.9)
    reqs = [GuidedRequest(p, enc[0], seed=100 + i) for i, p in enumerate(enc)]
    a = guided_generate(model, reqs, params, eos_token_ids=[eos_id], pad_token_id=eos_id)
    b = guided_generate(model, reqs[::-1], params, eos_token_ids=[eos_id], pad_token_id=eos_id)[::-1]
    assert [o.token_ids for o in a] == [o.token_ids for o in b]


def test_left_pad_shapes():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError):
        left_pad([[1], []], pad_id=0)


def test_common_prefix_len():
    from synthembed.llm.guidance import _common_prefix_len

    assert _common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert _common_prefix_len([[5], [6]]) == 0
    assert _common_prefix_len([[1, 2], [1, 2]]) == 2
