"""The transformers backend on a tiny random Llama: batching, left padding, per-request seeds, limits."""

from __future__ import annotations

import pytest

from synthembed.errors import ModelLoadError
from synthembed.llm import ChatRequest, SamplingParams, create_backend
from synthembed.llm.transformers_local import PerRequestSampler, resolve_model_folder


@pytest.fixture(scope="module")
def backend(tiny_llama_dir):
    return create_backend("transformers", model=str(tiny_llama_dir), batch_size=4, dtype="float32", device="cpu")


def _req(rid: str, text: str, **params) -> ChatRequest:
    params.setdefault("max_new_tokens", 12)
    return ChatRequest(rid, ({"role": "user", "content": text},), SamplingParams(**params))


PROMPTS = ["Hello there.", "A much longer prompt that forces left padding of the other rows in the batch.", "Hi",
           "Write one sentence about rivers and lakes."]


def test_sampled_output_does_not_depend_on_batch_mates(backend):
    target = _req("t", PROMPTS[0], seed=1234, temperature=1.0)
    alone = backend.generate_batch([target])[0]
    mates = [_req(f"m{i}", p, seed=i, temperature=1.0) for i, p in enumerate(PROMPTS[1:])]
    together = {g.request_id: g for g in backend.generate_batch(mates[:2] + [target] + mates[2:])}
    assert together["t"].text == alone.text
    assert together["t"].completion_tokens == alone.completion_tokens
    shuffled = {g.request_id: g for g in backend.generate_batch([target] + mates[::-1])}
    assert shuffled["t"].text == alone.text


def test_greedy_batched_equals_one_at_a_time(backend):
    reqs = [_req(f"g{i}", p, temperature=0.0) for i, p in enumerate(PROMPTS)]
    batched = {g.request_id: g.text for g in backend.generate(reqs)}
    single = {r.id: backend.generate_batch([r])[0].text for r in reqs}
    assert batched == single


def test_seeds_change_samples_and_repeat_exactly(backend):
    a = backend.generate_batch([_req("a", PROMPTS[3], seed=1)])[0].text
    assert a == backend.generate_batch([_req("a", PROMPTS[3], seed=1)])[0].text
    others = {backend.generate_batch([_req("a", PROMPTS[3], seed=s)])[0].text for s in range(2, 6)}
    assert others - {a}


def test_per_request_token_limits_and_counts(backend):
    out = {g.request_id: g for g in backend.generate([_req("short", PROMPTS[0], max_new_tokens=3, seed=1),
                                                      _req("long", PROMPTS[1], max_new_tokens=9, seed=2)])}
    assert out["short"].completion_tokens <= 3 and out["long"].completion_tokens <= 9
    assert out["short"].finish_reason in ("length", "stop")
    assert out["long"].prompt_tokens > out["short"].prompt_tokens > 0
    assert all(g.ok for g in out.values())


def test_backend_yields_every_request_once(backend):
    reqs = [_req(f"r{i}", PROMPTS[i % 4], seed=i, max_new_tokens=2) for i in range(10)]  # 3 batches of <= 4
    ids = [g.request_id for g in backend.generate(iter(reqs))]
    assert sorted(ids) == sorted(r.id for r in reqs)


def test_sampler_top_p_keeps_only_the_nucleus():
    import torch

    scores = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]]))  # (1, vocab)
    picks = set()
    for seed in range(200):
        out = PerRequestSampler([1.0], [0.8], [seed])(None, scores)
        picks.add(int(out.argmax()))
    assert picks == {0, 1}
    greedy = PerRequestSampler([0.0], [1.0], [0])(None, scores)
    assert int(greedy.argmax()) == 0 and torch.isinf(greedy).sum() == 3


def test_model_references(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_folder("./missing/folder")
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        resolve_model_folder(tmp_path / "x.gguf")
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_folder(tmp_path)
    assert resolve_model_folder("org/name") == ("org/name", "org/name")


def test_logits_processor_factory_runs_before_the_sampler(tiny_llama_dir):
    import torch

    from synthembed.llm.transformers_local import TransformersBackend

    seen = []

    class OnlyEos:
        def __call__(self, input_ids, scores):  # (batch, seq), (batch, vocab)
            forced = torch.full_like(scores, float("-inf"))
            forced[:, eos] = 0.0
            return forced

    def factory(backend, batch):
        seen.append([r.id for r in batch])
        return OnlyEos() if any(r.params.response_format for r in batch) else None

    backend = TransformersBackend(str(tiny_llama_dir), batch_size=2, dtype="float32", device="cpu",
                                  logits_processor_factory=factory)
    eos = backend.tokenizer.eos_token_id
    plain = backend.generate_batch([_req("p", PROMPTS[0], seed=1, max_new_tokens=4)])[0]
    forced = backend.generate_batch([_req("f", PROMPTS[0], seed=1, max_new_tokens=4,
                                          response_format={"type": "json_object"})])[0]
    assert seen == [["p"], ["f"]]
    assert forced.text == "" and forced.finish_reason == "stop" and forced.completion_tokens == 0
    assert plain.completion_tokens > 0
