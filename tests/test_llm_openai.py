"""The openai backend against a real OpenAI-compatible HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import pytest

from synthembed.llm import BackendError, ChatRequest, SamplingParams, create_backend
from synthembed.llm.loopback import LoopbackServer
from synthembed.llm.openai_compat import OpenAIBackend, retry_after_seconds


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


def _backend(server, **options) -> OpenAIBackend:
    defaults = {"model": "m", "base_url": server.base_url, "concurrency": 4, "timeout": 0.5, "max_retries": 3,
                "backoff_base": 0.001}
    return create_backend("openai", **{**defaults, **options})


def _req(rid: str, text: str | None = None, **params) -> ChatRequest:
    return ChatRequest(rid, ({"role": "user", "content": text or rid},), SamplingParams(**params))


def _run(backend, reqs):
    return {g.request_id: g for g in backend.generate(reqs)}


def test_answers_and_token_counts(server):
    out = _run(_backend(server), [_req(f"r{i}", f"hello number {i}") for i in range(10)])
    assert len(out) == 10
    assert out["r3"].text == "echo: hello number 3"
    assert out["r3"].prompt_tokens == 3 and out["r3"].completion_tokens == 4
    assert server.total == 10


@pytest.mark.parametrize("fault", ["[[429x2]]", "[[500x2]]", "[[garbagex2]]", "[[timeoutx1]]"])
def test_transient_faults_are_retried(server, fault):
    server.hang = 1.5  # longer than the client timeout
    backend = _backend(server)
    out = _run(backend, [_req("a", f"text {fault}")])
    assert out["a"].ok, out["a"].error
    expected_attempts = 1 + int(fault.split("x")[1][0])
    assert server.hits[f"text {fault}"] == expected_attempts
    assert backend.retries == expected_attempts - 1


def test_gives_up_after_max_retries_with_clear_error(server):
    backend = _backend(server, max_retries=2)
    out = _run(backend, [_req("a", "x [[500x9]]"), _req("b", "fine")])
    assert not out["a"].ok and out["a"].text is None
    assert "request a" in out["a"].error and "HTTP 500" in out["a"].error and "2 retries" in out["a"].error
    assert server.hits["x [[500x9]]"] == 3
    assert out["b"].ok


def test_other_4xx_not_retried(server):
    backend = _backend(server)
    out = _run(backend, [_req("bad-one", "y [[400]]")])
    assert server.hits["y [[400]]"] == 1
    assert backend.retries == 0
    assert "request bad-one" in out["bad-one"].error and "HTTP 400" in out["bad-one"].error


def test_auth_failure_stops_the_run_without_leaking_the_key(server, monkeypatch):
    monkeypatch.setenv("MY_SECRET_KEY_VAR", "sk-very-secret-123")
    backend = _backend(server, api_key_env="MY_SECRET_KEY_VAR")
    with pytest.raises(BackendError) as info:
        _run(backend, [_req("a", "z [[401]]")])
    assert "HTTP 401" in str(info.value) and "request a" in str(info.value)
    assert "sk-very-secret" not in str(info.value) and "sk-very-secret" not in repr(backend)
    assert server.authorizations[-1] == "Bearer sk-very-secret-123"


def test_no_key_sends_no_authorization(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    _run(_backend(server), [_req("a")])
    assert server.authorizations == [None]


def test_retry_after_is_honoured(server):
    server.retry_after = "7"
    backend = _backend(server)
    delays = []

    async def record(delay):
        delays.append(delay)

    backend.sleep = record
    out = _run(backend, [_req("a", "q [[429x1]]"), _req("b", "q [[500x1]]")])
    assert out["a"].ok and out["b"].ok
    assert 7.0 in delays  # the 429's Retry-After
    assert any(0 < d < 0.01 for d in delays)  # the 500's jittered backoff


def test_backoff_grows_exponentially_with_jitter():
    backend = OpenAIBackend("m", backoff_base=1.0, backoff_max=100.0)
    for attempt in range(5):
        values = [backend.backoff(attempt) for _ in range(50)]
        assert all(0.5 * 2**attempt <= v <= 1.5 * 2**attempt for v in values)
        assert len(set(values)) > 1
    assert OpenAIBackend("m", backoff_base=1.0, backoff_max=3.0).backoff(10) <= 4.5


def test_retry_after_parsing():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_seconds("junk") is None
    assert retry_after_seconds(None) is None


def test_payload_passes_params_and_response_format(server):
    fmt = {"type": "json_object"}
    _run(_backend(server), [_req("a", temperature=0.3, top_p=0.8, max_new_tokens=7, seed=11, stop=["\n"],
                                 response_format=fmt)])
    body = server.bodies[-1]
    assert body["model"] == "m" and body["response_format"] == fmt
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"], body["stop"]) == (0.3, 0.8, 7, 11, ["\n"])


def test_concurrency_is_bounded(server):
    server.delay = 0.05
    _run(_backend(server, concurrency=3), [_req(f"r{i}") for i in range(12)])
    assert server.max_in_flight <= 3
    assert server.max_in_flight >= 2


def test_stopping_early_sends_no_more(server):
    backend = _backend(server, concurrency=1)
    stream = backend.generate(_req(f"r{i}") for i in range(50))
    next(stream)
    stream.close()
    assert server.total <= 3


def test_unreachable_server_is_a_counted_error():
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_base=0.001, timeout=0.5)
    (gen,) = list(backend.generate([_req("a")]))
    assert not gen.ok and "connection error" in gen.error


def test_fleet_spreads_requests_and_skips_a_dead_server():
    """Several --base-url servers: per-server concurrency limits, and a server that fails is skipped."""
    with LoopbackServer(delay=0.05) as first, LoopbackServer(delay=0.05) as second:
        dead = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: connection refused
        backend = create_backend("openai", model="m", base_url=[first.base_url, dead, second.base_url],
                                 concurrency=3, timeout=1.0, max_retries=4, backoff_base=0.001, cooldown=60.0)
        out = _run(backend, [_req(f"r{i}") for i in range(40)])
        assert all(g.ok for g in out.values()) and len(out) == 40
        assert first.total > 5 and second.total > 5 and first.total + second.total == 40
        assert max(first.max_in_flight, second.max_in_flight) <= 3
        stats = backend.stats()
        # after `down_after` failures in a row the server is skipped; attempts already in flight may add a few
        assert stats[dead]["answered"] == 0
        assert backend.down_after <= stats[dead]["failed_attempts"] < backend.down_after + 3
