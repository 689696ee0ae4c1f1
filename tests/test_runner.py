"""The two runner layers: the sharded record store and the LLM runner (cache, drops, budget, resume, kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from synthembed.errors import DataError, SynthEmbedError
from synthembed.llm import ChatRequest, SamplingParams
from synthembed.llm.fake import FakeBackend, FakeFailure
from synthembed.synthesis.inputs import InputRow, rows_from_texts
from synthembed.synthesis.records import RecordStore, iter_records, read_manifest
from synthembed.synthesis.runner import Drop, RunOptions, row_rng, run_task


class EchoTask:
    """A minimal two-slot task: 'up' upper-cases the answer, 'n' counts its words; 'BAD' answers are dropped."""

    name = "echo"
    slots = ("up", "n")

    def config(self) -> dict[str, Any]:
        return {"version": 1}

    def build_request(self, row: InputRow, rng, slot: str) -> ChatRequest:
        return ChatRequest("ignored", ({"role": "user", "content": f"{slot}: {row.text}"},),
                           SamplingParams(seed=rng.getrandbits(31)))

    def parse(self, text: str, row: InputRow, slot: str) -> Any:
        if "BAD" in text:
            raise Drop("parse_failure", "saw BAD")
        return text.upper() if slot == "up" else len(text.split())

    def assemble(self, row: InputRow, parsed: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": row.id, "text": row.text, "up": parsed["up"], "n": parsed["n"], "meta": {}}


def _answer(request: ChatRequest) -> str:
    return request.messages[-1]["content"].split(": ", 1)[1]


# ---------------------------------------------------------------- layer (a)
def test_store_writes_shards_manifest_and_resumes(tmp_path):
    store = RecordStore(tmp_path / "out", {"seed": 1}, shard_size=2, check_keys=("seed",))
    for i in range(5):
        store.add({"id": f"r{i}", "x": i, "meta": {"usage": {"prompt_tokens": 2, "completion_tokens": 1}}})
    store.drop("r5", "refusal", raw="I cannot", detail="...")
    store.finish(order=[f"r{i}" for i in range(5, -1, -1)])
    manifest = read_manifest(tmp_path / "out")
    assert manifest["complete"] and manifest["counts"] == {"written": 5, "dropped": {"refusal": 1}}
    assert manifest["usage"] == {"completion_tokens": 5, "prompt_tokens": 10}
    merged = [json.loads(line)["id"] for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert merged == ["r4", "r3", "r2", "r1", "r0"]
    dropped = [json.loads(line) for p in sorted((tmp_path / "out" / "dropped").glob("part-*.jsonl"))
               for line in p.read_text().splitlines()]
    assert dropped == [{"id": "r5", "reason": "refusal", "detail": "...", "raw": "I cannot", "meta": {}}]

    again = RecordStore(tmp_path / "out", {"seed": 1}, check_keys=("seed",))
    assert again.done_ids == {f"r{i}" for i in range(6)}
    assert again.counts["written"] == 5 and again.usage["prompt_tokens"] == 10
    with pytest.raises(ValueError, match="already written"):
        again.add({"id": "r1"})
    with pytest.raises(SynthEmbedError, match="different configuration"):
        RecordStore(tmp_path / "out", {"seed": 2}, check_keys=("seed",))
    assert RecordStore(tmp_path / "out", {"seed": 2}, overwrite=True).done_ids == set()


def test_store_unflushed_rows_are_lost_not_duplicated(tmp_path):
    store = RecordStore(tmp_path, {}, shard_size=3, flush_seconds=1e9)
    for i in range(7):
        store.add({"id": f"r{i}"})
    # no finish: as if killed; 6 rows in two shards, r6 only in memory
    resumed = RecordStore(tmp_path, {})
    assert resumed.done_ids == {f"r{i}" for i in range(6)}
    resumed.add({"id": "r6"})
    resumed.finish()
    ids = [r["id"] for r in iter_records(tmp_path)]
    assert sorted(ids) == [f"r{i}" for i in range(7)] and len(ids) == 7


def test_store_rejects_bad_ids_and_edited_shards(tmp_path):
    store = RecordStore(tmp_path, {})
    with pytest.raises(ValueError, match="non-empty string"):
        store.add({"x": 1})
    store.add({"id": "a"})
    store.finish()
    shard = next((tmp_path / "records").glob("part-*.jsonl"))
    shard.write_text(shard.read_text() + shard.read_text())
    with pytest.raises(DataError, match="appears twice"):
        RecordStore(tmp_path, {})
    shard.write_text("{not json\n")
    with pytest.raises(DataError, match="corrupt shard"):
        RecordStore(tmp_path, {})


def test_store_removes_leftover_temp_files(tmp_path):
    (tmp_path / "records").mkdir(parents=True)
    leftover = tmp_path / "records" / ".part-00000.jsonl.abc.tmp"
    leftover.write_text('{"id": "half')
    RecordStore(tmp_path, {})
    assert not leftover.exists()


# ---------------------------------------------------------------- layer (b)
def _options(tmp_path, **kw) -> RunOptions:
    kw.setdefault("cache_path", tmp_path / "out" / "cache.sqlite")
    return RunOptions(output=tmp_path / "out", progress=False, shard_size=kw.pop("shard_size", 4), **kw)


def test_run_task_records_drops_and_counts(tmp_path):
    rows = rows_from_texts(["one two", "three BAD", "four five six", "seven"])
    backend = FakeBackend(responder=_answer, script={"R3/n": FakeFailure("HTTP 500 after retries")})
    summary = run_task(EchoTask(), rows, backend, _options(tmp_path))
    assert summary.complete
    assert summary.counts == {"written": 2, "parse_failure": 1, "backend_error": 1}
    records = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["R0", "R2"]
    assert records[1]["up"] == "FOUR FIVE SIX" and records[1]["n"] == 3
    assert records[0]["meta"]["usage"]["requests"] == 2 and records[0]["meta"]["source"] == "memory:0"
    drops = {json.loads(line)["id"]: json.loads(line) for p in (tmp_path / "out" / "dropped").glob("*.jsonl")
             for line in p.read_text().splitlines()}
    assert drops["R1"]["reason"] == "parse_failure" and drops["R1"]["raw"]["up"] == "three BAD"
    assert drops["R3"]["reason"] == "backend_error" and "HTTP 500" in drops["R3"]["detail"]
    assert summary.manifest["counts"]["dropped"] == {"backend_error": 1, "parse_failure": 1}
    assert "2 records written" in summary.text()


def test_cache_means_a_rerun_sends_nothing(tmp_path):
    rows = rows_from_texts([f"sentence number {i}" for i in range(6)])
    first = FakeBackend(responder=_answer, script={"R2/up": FakeFailure("boom")})
    cache = tmp_path / "shared-cache.sqlite"  # outside the output folder, so --overwrite keeps it
    run_task(EchoTask(), rows, first, _options(tmp_path, cache_path=cache))
    assert len(first.calls) == 12
    second = FakeBackend(responder=_answer)
    summary = run_task(EchoTask(), rows, second, _options(tmp_path, overwrite=True, cache_path=cache))
    assert second.calls == []  # errors are cached too
    assert summary.counts == {"written": 5, "backend_error": 1}
    assert summary.usage["cached_requests"] == 12
    third = FakeBackend(responder=_answer)
    summary = run_task(EchoTask(), rows, third, _options(tmp_path, overwrite=True, retry_errors=True, cache_path=cache))
    assert third.calls == ["R2/up"] and summary.counts == {"written": 6}


def test_limit_and_resume_extend_a_run(tmp_path):
    rows = rows_from_texts([f"s {i}" for i in range(10)])
    backend = FakeBackend(responder=_answer)
    assert run_task(EchoTask(), rows, backend, _options(tmp_path, limit=4)).counts == {"written": 4}
    backend.calls.clear()
    summary = run_task(EchoTask(), rows, backend, _options(tmp_path, limit=7))
    assert summary.counts == {"written": 7} and len(backend.calls) == 6  # only the 3 new rows
    assert len(read_manifest(tmp_path / "out")["runs"]) == 2


def test_token_budget_stops_and_resume_finishes(tmp_path):
    rows = rows_from_texts([f"a b c d {i}" for i in range(20)])
    backend = FakeBackend(responder=_answer)  # 3 prompt + 5 completion words per request here
    summary = run_task(EchoTask(), rows, backend, _options(tmp_path, token_budget=50, cache_path=None))
    assert not summary.complete and "token budget" in summary.manifest["stopped"]
    assert 0 < summary.counts["written"] < 20
    assert len(backend.calls) < 20
    summary = run_task(EchoTask(), rows, FakeBackend(responder=_answer), _options(tmp_path, cache_path=None))
    assert summary.complete and summary.counts == {"written": 20}


def test_request_seeds_depend_on_run_seed_and_row_only():
    a = row_rng(0, "echo", "R1", "up").getrandbits(31)
    assert a == row_rng(0, "echo", "R1", "up").getrandbits(31)
    assert a != row_rng(1, "echo", "R1", "up").getrandbits(31)
    assert a != row_rng(0, "echo", "R1", "n").getrandbits(31)


def test_resuming_with_another_model_is_refused(tmp_path):
    rows = rows_from_texts(["x y"])
    run_task(EchoTask(), rows, FakeBackend("m1", responder=_answer), _options(tmp_path))
    with pytest.raises(SynthEmbedError, match="model"):
        run_task(EchoTask(), rows, FakeBackend("m2", responder=_answer), _options(tmp_path))


# ---------------------------------------------------------------- kill -9 and resume
_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_runner import EchoTask, _answer
    from synthembed.llm.fake import FakeBackend
    from synthembed.synthesis.inputs import rows_from_texts
    from synthembed.synthesis.runner import RunOptions, run_task

    out, use_cache, latency = Path(sys.argv[1]), sys.argv[2] == "cache", float(sys.argv[3])
    rows = rows_from_texts([f"sentence {{i}} " + "w " * (i % 7) for i in range(120)])
    options = RunOptions(output=out, cache_path=out / "cache.sqlite" if use_cache else None, shard_size=7,
                         flush_seconds=0.05, progress=False)
    run_task(EchoTask(), rows, FakeBackend(responder=_answer, latency=latency), options)
    """
)


def _records(folder: Path) -> list[str]:
    return (folder / "records.jsonl").read_text().splitlines()


@pytest.mark.parametrize("use_cache", ["cache", "nocache"])
def test_kill_9_then_resume_gives_exactly_the_uninterrupted_records(tmp_path, use_cache):
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, str(script), str(reference), use_cache, "0"], check=True, env=env, timeout=120)

    out = tmp_path / "killed"
    for attempt in range(3):  # kill at different moments, then let it finish
        proc = subprocess.Popen([sys.executable, str(script), str(out), use_cache, "0.01"], env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            done = sum(1 for _ in (out / "records").glob("part-*.jsonl")) if (out / "records").exists() else 0
            if done >= 2 + 3 * attempt:
                break
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert read_manifest(out) is not None  # it got far enough to write shards before the kills
    subprocess.run([sys.executable, str(script), str(out), use_cache, "0"], check=True, env=env, timeout=120)

    killed = [json.loads(line) for line in _records(out)]
    expected = [json.loads(line) for line in _records(reference)]
    strip = lambda r: {k: v for k, v in r.items() if k != "meta"}  # noqa: E731 (usage.cached differs)
    assert [strip(r) for r in killed] == [strip(r) for r in expected]
    ids = [r["id"] for r in iter_records(out)]
    assert len(ids) == len(set(ids)) == 120
    assert read_manifest(out)["counts"]["written"] == 120
    assert len(read_manifest(out)["runs"]) >= 2


# ---------------------------------------------------------------- issue 15: one source of truth, retries in place
def test_a_merged_file_older_than_its_shards_never_wins(tmp_path):
    """A complete --limit 50 run, then a larger rerun killed midway: readers see every shard row."""
    from synthembed.synthesis.records import record_files
    from synthembed.training.data import load_training_rows

    out = tmp_path / "out"
    rows = [{"id": f"r{i}", "anchor": f"a{i}", "positive": f"p{i}", "negative": f"n{i}"} for i in range(9)]
    store = RecordStore(out, {"k": 1}, shard_size=2)
    for row in rows[:3]:
        store.add(dict(row))
    store.finish(order=[r["id"] for r in rows[:3]], complete=True)
    stale = (out / "records.jsonl").read_text()
    assert len(load_training_rows(out)) == 3

    store = RecordStore(out, {"k": 1}, shard_size=2)  # the rerun resumes the folder ...
    for row in rows[3:]:
        store.add(dict(row))
    store.flush()  # ... writes shards, and is killed before it finishes
    assert not (out / "records.jsonl").exists()
    assert len(load_training_rows(out)) == 9

    (out / "records.jsonl").write_text(stale)  # even a stale merged copy put back by hand is not read
    assert record_files(out) == sorted((out / "records").glob("part-*.jsonl"))
    assert len(load_training_rows(out)) == 9


def test_retry_reasons_supersede_backend_error_drops_only(tmp_path):
    out = tmp_path / "out"
    store = RecordStore(out, {"k": 1})
    store.add({"id": "a", "meta": {}})
    store.drop("b", "backend_error", detail="HTTP 500")
    store.drop("c", "copy", detail="same as the input")
    store.finish(complete=True)

    again = RecordStore(out, {"k": 1})  # without retrying: everything is done
    assert again.done_ids == {"a", "b", "c"} and not again.retrying
    retry = RecordStore(out, {"k": 1}, retry_reasons=("backend_error",))
    assert retry.done_ids == {"a", "c"} and retry.retrying == {"b"}
    retry.add({"id": "b", "meta": {}})
    manifest = retry.finish(complete=True)
    assert manifest["counts"] == {"written": 2, "dropped": {"copy": 1}}
    reread = RecordStore(out, {"k": 1})  # the later shard supersedes the old drop when read back
    assert reread.done_ids == {"a", "b", "c"} and reread.counts["backend_error"] == 0
    assert sorted(r["id"] for r in iter_records(out)) == ["a", "b"]
