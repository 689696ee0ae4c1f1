"""The backend protocol: request validation, cache keys, the registry, the fake backend, the sqlite cache."""

from __future__ import annotations

import pytest

from synthembed.llm import BackendError, ChatRequest, Generation, LLMBackend, SamplingParams, create_backend, derive_seed
from synthembed.llm.base import truncate_at_stop
from synthembed.llm.cache import RequestCache
from synthembed.llm.fake import FakeBackend, FakeFailure


def _req(rid: str, text: str = "hi", **params) -> ChatRequest:
    return ChatRequest(rid, ({"role": "user", "content": text},), SamplingParams(**params))


def test_sampling_params_validate():
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError):
        SamplingParams(max_new_tokens=0)
    assert SamplingParams(stop=["a"]).stop == ("a",)


@pytest.mark.parametrize(
    "message",
    [{"role": "robot", "content": "x"}, {"role": "user"}, {"role": "user", "content": 3}, {"role": "user", "content": "x", "extra": 1}],
)
def test_chat_request_rejects_bad_messages(message):
    with pytest.raises(ValueError, match="request 'r'"):
        ChatRequest("r", (message,))


def test_cache_key_depends_on_payload_not_id():
    a, b = _req("a", seed=1), _req("b", seed=1)
    assert a.cache_key("m") == b.cache_key("m")
    assert a.cache_key("m") != a.cache_key("other-model")
    assert a.cache_key("m") != _req("a", seed=2).cache_key("m")
    assert a.cache_key("m") != _req("a", "hello", seed=1).cache_key("m")
    assert a.cache_key("m") != _req("a", seed=1, temperature=0.5).cache_key("m")


def test_derive_seed_is_stable_and_spread():
    assert derive_seed(0, "syncse", "L1", "positive") == derive_seed(0, "syncse", "L1", "positive")
    seeds = {derive_seed(0, "t", f"L{i}") for i in range(1000)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**31 for s in seeds)


def test_truncate_at_stop():
    assert truncate_at_stop("one\n\ntwo", ["\n\n"]) == ("one", True)
    assert truncate_at_stop("a.b;c", [";", "."]) == ("a", True)
    assert truncate_at_stop("abc", []) == ("abc", False)


def test_registry_creates_fake_and_rejects_unknown():
    backend = create_backend("fake", model="m")
    assert isinstance(backend, LLMBackend)
    assert backend.name == "fake" and backend.model == "m"
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend("nope")


def test_vllm_is_not_an_in_process_backend():
    """vLLM is used as a server behind the openai backend (docs/gpu.md); the untested in-process backend is gone."""
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend("vllm", model="x")


def test_fake_backend_script_failures_and_determinism():
    backend = FakeBackend(script={"b": "scripted", "c": FakeFailure("boom")})
    out = {g.request_id: g for g in backend.generate([_req("a"), _req("b"), _req("c"), _req("d")])}
    assert out["b"].text == "scripted" and out["b"].ok
    assert out["c"].error == "boom" and not out["c"].ok and out["c"].text is None
    assert out["a"].text == out["d"].text  # same payload, same answer
    assert backend.calls == ["a", "b", "c", "d"]
    text = "one two three four five six seven eight"
    again = FakeBackend().answer(_req("x", text, seed=5))
    assert again.text == FakeBackend().answer(_req("y", text, seed=5)).text
    assert sorted(again.text.lower().split()) == sorted(text.split())  # a shuffle of the last line
    assert again.text != FakeBackend().answer(_req("y", text, seed=6)).text


def test_fake_backend_failure_rate_is_reproducible():
    reqs = [_req(f"r{i}", f"text {i}") for i in range(200)]
    first = [g.ok for g in FakeBackend(failure_rate=0.3).generate(reqs)]
    second = [g.ok for g in FakeBackend(failure_rate=0.3).generate(reqs)]
    assert first == second
    assert 30 < first.count(False) < 90


def test_fake_backend_stop_and_length():
    backend = FakeBackend(script={"a": "one two\n\nthree", "b": "w " * 50})
    out = {g.request_id: g for g in backend.generate([_req("a", stop=["\n\n"]), _req("b", max_new_tokens=5)])}
    assert out["a"].text == "one two" and out["a"].finish_reason == "stop"
    assert out["b"].completion_tokens == 5 and out["b"].finish_reason == "length"


def test_request_cache_round_trip_errors_and_retry(tmp_path):
    path = tmp_path / "c.sqlite"
    with RequestCache(path) as cache:
        ok, bad = _req("a", "x"), _req("b", "y")
        assert cache.get(ok, "m") is None
        cache.put(ok, "m", Generation("a", "answer", None, 3, 4, "stop"))
        cache.put(bad, "m", Generation("b", None, "HTTP 400", 3, 0, "error"))
        assert len(cache) == 2
    with RequestCache(path) as cache:  # persisted
        hit = cache.get(_req("renamed", "x"), "m")
        assert hit.request_id == "renamed" and hit.text == "answer" and hit.cached
        assert (hit.prompt_tokens, hit.completion_tokens) == (3, 4)
        assert cache.get(bad, "m").error == "HTTP 400"
        assert cache.get(ok, "other-model") is None
    with RequestCache(path, retry_errors=True) as cache:
        assert cache.get(bad, "m") is None
        assert cache.get(ok, "m").text == "answer"
