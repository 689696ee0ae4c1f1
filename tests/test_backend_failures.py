"""A dead or misconfigured server fails loudly, nothing is cached as an answer, and the same command
completes every row once the server works (issue 15, items 3, 4 and 7), against the loopback server."""

from __future__ import annotations

import hashlib
import json
import shlex
import socket
import sqlite3
import textwrap
from pathlib import Path

import pytest

from synthembed.cli import main
from synthembed.llm.loopback import LoopbackServer
from synthembed.llm.redact import redact, register_secret
from synthembed.synthesis.records import iter_records, read_manifest

ANCHORS = [
    "A man plays a guitar on the busy street.",
    "Two dogs run quickly across a green field.",
    "A woman is cooking a large dinner at home.",
    "The children are reading books in the library.",
    "An old train crosses the long stone bridge.",
    "The market opens early every Saturday morning.",
]
_WORDS = (["quiet", "busy", "small", "bright", "old", "green", "tall", "warm"],
          ["child", "farmer", "dog", "teacher", "bird", "driver", "painter", "sailor"],
          ["waits", "sings", "runs", "reads", "sleeps", "works", "smiles", "walks"],
          ["river", "market", "station", "garden", "bridge", "school", "harbor", "forest"])


def _answer(body: dict) -> str:
    """A plausible one-sentence answer that differs per request (so positives and negatives differ)."""
    h = hashlib.sha256(json.dumps(body["messages"]).encode()).digest()
    adj, noun, verb, place = (words[h[i] % 8] for i, words in enumerate(_WORDS))
    return f"The {adj} {noun} {verb} near the {place} today."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _argv(tmp_path: Path, url: str, out: Path, *extra: str, anchors: list[str] = ANCHORS) -> list[str]:
    data = tmp_path / "anchors.txt"
    data.write_text("\n".join(anchors) + "\n", encoding="utf-8")
    return ["synthesize", "syncse", "--backend", "openai", "--base-url", url, "--model", "m", "--input", str(data),
            "--output", str(out), "--no-progress", "--max-retries", "0", "--timeout", "5", *extra]


def _cached(out: Path) -> list[tuple]:
    path = out / "cache.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT text, error FROM generations").fetchall()


def _complete_every_row(out: Path, n: int = len(ANCHORS)) -> None:
    manifest = read_manifest(out)
    assert manifest["complete"] is True and manifest["counts"]["written"] == n, manifest["counts"]
    assert "backend_error" not in manifest["counts"]["dropped"]
    assert len((out / "records.jsonl").read_text().splitlines()) == n
    assert sorted(r["id"] for r in iter_records(out)) == sorted({r["id"] for r in iter_records(out)})


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("synthembed: error:")]
    assert len(err) == 1, err
    return err[0]


def test_nothing_listening_fails_at_once_then_the_same_command_completes(tmp_path, capsys) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    out = tmp_path / "out"
    argv = _argv(tmp_path, url, out)
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert f"cannot connect to {url}" in line and "refused" in line.lower()
    assert _cached(out) == [] and not list((out / "records").glob("part-*"))
    with LoopbackServer(responder=_answer, port=port):
        assert main(argv) == 0
    _complete_every_row(out)


def test_url_without_scheme_and_unknown_host(tmp_path, capsys) -> None:
    assert main(_argv(tmp_path, "127.0.0.1:8000/v1", tmp_path / "a")) == 2
    assert "'127.0.0.1:8000/v1' is not an http(s) URL (did you mean 'http://127.0.0.1:8000/v1'?)" in _one_line_error(capsys)
    assert main(_argv(tmp_path, "http://no-such-host.invalid/v1", tmp_path / "b")) == 2
    assert "cannot connect to http://no-such-host.invalid/v1" in _one_line_error(capsys)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_refused_credentials_or_model_fail_at_once_then_complete(tmp_path, capsys, status) -> None:
    out = tmp_path / "out"
    with LoopbackServer(responder=_answer) as server:
        server.status_all = status
        argv = _argv(tmp_path, server.base_url, out)
        assert main(argv) == 2
        # a 404 from the models endpoint means "no such endpoint": the 1-token chat call decides
        where = "chat/completions" if status == 404 else "models"
        assert f"HTTP {status} from {server.base_url}/{where}" in _one_line_error(capsys)
        assert server.total == (status == 404) and _cached(out) == []  # no request of the run was sent
        server.status_all = None
        assert main(argv) == 0
    _complete_every_row(out)


def test_every_request_failing_exits_4_caches_nothing_and_retry_errors_completes(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    with LoopbackServer(responder=_answer) as server:
        server.status_all = 500
        argv = _argv(tmp_path, server.base_url, out)
        assert main(argv) == 4
        err = capsys.readouterr().err
        assert f"{len(ANCHORS)} row(s) dropped because the backend failed (backend_error)" in err
        retry = err.strip().splitlines()[-1].strip()
        assert retry == shlex.join(["synthembed", *argv, "--retry-errors"])
        assert _cached(out) == []  # server errors are not answers
        assert read_manifest(out)["counts"]["dropped"] == {"backend_error": len(ANCHORS)}
        server.status_all = None
        assert main(argv) == 4  # without --retry-errors the drops stay (and it says so again)
        assert main(shlex.split(retry)[1:]) == 0  # the printed command, in the same folder
    _complete_every_row(out)
    # the folder reads back the same after the retry (superseded drops are not counted)
    assert main(argv) == 0
    _complete_every_row(out)


def test_content_drops_stay_dropped_on_retry(tmp_path) -> None:
    out = tmp_path / "out"
    anchors = [*ANCHORS[:3], "The weather is nice [[500x1]] today in the town."]
    copy = "The weather is nice [[500x1]] today in the town."
    with LoopbackServer(responder=lambda body: copy if "today in the town" in body["messages"][-1]["content"]
                        else _answer(body)) as server:
        argv = _argv(tmp_path, server.base_url, out, anchors=anchors)
        assert main(argv) == 4  # the first attempt of the last row's requests failed
        assert main([*argv, "--retry-errors"]) == 0
        counts = read_manifest(out)["counts"]
    assert counts["written"] == 3 and "backend_error" not in counts["dropped"]
    assert sum(counts["dropped"].values()) == 1  # the copy of its anchor: a content drop, kept as it is
    sent = server.total
    assert main([*argv, "--retry-errors"]) == 0 and server.total == sent  # content drops are not re-sent


def test_circuit_breaker_stops_resumably_and_prints_the_command(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    anchors = [f"{a[:-1]} number {i}." for i in range(5) for a in ANCHORS]  # 30 rows, 60 requests
    with LoopbackServer(responder=_answer) as server:
        server.status_all = 500
        argv = _argv(tmp_path, server.base_url, out, "--error-window", "6", "--concurrency", "2", anchors=anchors)
        assert main(argv) == 4
        err = capsys.readouterr().err
        assert "stopped by the circuit breaker: " in err and "of the last 6 requests failed" in err
        assert server.total < 2 * len(anchors)  # it stopped sending
        manifest = read_manifest(out)
        assert manifest["complete"] is False and manifest["stopped"].startswith("circuit breaker")
        resume = err.strip().splitlines()[-1].strip()
        server.status_all = None
        assert main(shlex.split(resume)[1:]) == 0
    _complete_every_row(out, len(anchors))


def test_pipeline_stage_is_not_marked_done_until_its_rows_are_usable(tmp_path, capsys) -> None:
    from synthembed.pipeline.plan import MARKER

    data = tmp_path / "anchors.txt"
    data.write_text("\n".join(ANCHORS) + "\n", encoding="utf-8")
    with LoopbackServer(responder=_answer) as server:
        config = tmp_path / "p.yaml"
        config.write_text(textwrap.dedent(f"""
            name: t
            output_dir: {tmp_path / 'run'}
            stages:
              - name: syn
                command: synthesize syncse
                args: {{input: {data}, backend: openai, base_url: {server.base_url}, model: m, max_retries: 0,
                        no_progress: true}}
        """))
        server.status_all = 500
        assert main(["run", str(config), "--no-report"]) == 2
        line = _one_line_error(capsys)
        assert "stage 'syn' failed (exit 4)" in line and line.endswith(f"synthembed run {config} --no-report --retry-errors")
        assert not (tmp_path / "run" / "syn" / MARKER).exists()
        server.status_all = None
        assert main(["run", str(config), "--no-report", "--retry-errors"]) == 0
    assert (tmp_path / "run" / "syn" / MARKER).exists()
    _complete_every_row(tmp_path / "run" / "syn")


def test_keys_echoed_by_a_server_are_never_stored_or_printed(tmp_path, capsys, monkeypatch) -> None:
    key = "sk-test-0123456789abcdefSECRET"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    out = tmp_path / "out"
    with LoopbackServer(responder=_answer) as server:
        server.echo_auth = True
        argv = _argv(tmp_path, server.base_url, out, anchors=[*ANCHORS[:2], "This row asks for a [[400]] answer now."])
        assert main(argv) == 4  # the 400 row is a backend_error drop
        assert server.authorizations[-1] == f"Bearer {key}"  # the key was sent, and echoed in the 400 body
        server.status_all = 401
        assert main([*argv, "--retry-errors"]) == 2
    printed = capsys.readouterr()
    stored = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert "[REDACTED]" in printed.err
    for blob in (printed.out, printed.err, stored.decode("utf-8", "replace")):
        assert key not in blob and "0123456789abcdefSECRET" not in blob
    drops = [json.loads(line) for p in (out / "dropped").glob("part-*") for line in p.read_text().splitlines()]
    assert any("[REDACTED]" in d["detail"] for d in drops)


def test_redact_helper() -> None:
    register_secret("my-local-key-42")
    text = ('{"error": "bad key my-local-key-42", "Authorization": "Bearer abc.def-123", '
            '"api_key": "zzz", "other": "sk-proj-AbCdEf0123456789"}')
    cleaned = redact(text)
    for secret in ("my-local-key-42", "abc.def-123", "zzz", "AbCdEf0123456789"):
        assert secret not in cleaned
    assert redact("nothing to hide here") == "nothing to hide here" and redact(None) is None


def test_scratch_anchor_step_stopped_by_the_breaker_stops_the_run(tmp_path, capsys) -> None:
    """Two-step synthesis (scratch anchors first): a dead server stops at step 1 with exit 4, then resumes."""
    out = tmp_path / "out"
    with LoopbackServer(responder=lambda body: "\n".join(_answer({"messages": [m, {"n": i}]})
                                                          for i, m in enumerate(body["messages"] * 8))) as server:
        server.status_all = 500
        argv = ["synthesize", "syncse", "--mode", "scratch", "--backend", "openai", "--base-url", server.base_url,
                "--model", "m", "--limit", "40", "--output", str(out), "--no-progress", "--max-retries", "0",
                "--error-window", "2"]
        assert main(argv) == 4
        assert "circuit breaker" in capsys.readouterr().err
        assert not (out / "records").exists() or not list((out / "records").glob("part-*"))
        server.status_all = None
        assert main([*argv, "--retry-errors"]) in (0, 3)  # every anchor request answered now
    assert read_manifest(out / "anchors")["counts"]["dropped"].get("backend_error", 0) == 0


def test_a_dead_server_in_a_fleet_is_skipped_after_the_pre_flight(tmp_path, caplog) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    out = tmp_path / "out"
    with LoopbackServer(responder=_answer) as server:
        argv = _argv(tmp_path, dead, out)
        argv[argv.index(dead) + 1:argv.index(dead) + 1] = [server.base_url]  # --base-url DEAD LIVE
        with caplog.at_level("WARNING"):
            assert main(argv) == 0
    assert f"skipping {dead}: cannot connect" in caplog.text
    _complete_every_row(out)
