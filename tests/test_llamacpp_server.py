"""End to end against llama.cpp's real OpenAI-compatible server on the packaged SmolLM2-135M GGUF.

Not a stub: chat templates, stop tokens, finish reasons, usage fields, error bodies are the server's own.
SynCSE partial and scratch, graded negatives (levels and JSON partial), a two-stage `synthembed run`
(synthesis on the server, training on its output), the request cache answering a rerun with no server
at all, `synthembed serve-llm` as a user starts it, and a server killed mid-run and restarted. Small
row counts and token limits keep each test to seconds. They fail, not skip, without llama-cpp-python.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from synthembed.cli import main
from synthembed.llm import create_backend
from synthembed.llm.llamacpp_server import LlamaServer, free_port
from synthembed.synthesis.inputs import InputRow
from synthembed.synthesis.records import read_manifest
from synthembed.synthesis.runner import RunOptions
from synthembed.synthesis.syncse import SynCSETask, load_pools, run_syncse

SENTENCES = [
    "Two women are embracing while holding to go packages.",
    "A man is playing a guitar on a street corner at night.",
    "Children are running through a sprinkler in the park.",
    "An old bus drives slowly down a narrow mountain road.",
    "A chef slices fresh vegetables in a crowded kitchen.",
    "A dog jumps to catch a red ball on the beach.",
]


SHORT = ["--few-shot", "1", "--max-new-tokens", "32"]  # ~150-token prompts: seconds a request on a busy CPU


def _write_input(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(SENTENCES[:n]) + "\n", encoding="utf-8")
    return path


def _server_args(server: LlamaServer) -> list[str]:
    return ["--backend", "openai", "--base-url", server.base_url, "--model", server.alias, "--concurrency", "2",
            "--no-progress"]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _check_output(out: Path, rows: int, requests_per_row: int) -> dict:
    """The manifest's counts add up to the input rows, its usage to the requests, and every line parses."""
    manifest = read_manifest(out)
    assert manifest is not None and manifest["complete"], manifest
    counts = manifest["counts"]
    assert counts["written"] + sum(counts["dropped"].values()) == manifest["rows_done"] == rows, counts
    assert manifest["usage"]["requests"] == rows * requests_per_row, manifest["usage"]
    assert manifest["usage"]["prompt_tokens"] > 0 and manifest["usage"]["completion_tokens"] > 0
    assert "backend_error" not in counts["dropped"], counts
    records = _read_jsonl(out / "records.jsonl")
    assert len(records) == counts["written"]
    dropped = [row for part in sorted((out / "dropped").glob("part-*.jsonl")) for row in _read_jsonl(part)]
    assert len(dropped) == sum(counts["dropped"].values())
    assert len({r["id"] for r in records} | {d["id"] for d in dropped}) == rows  # each row exactly once
    return manifest


def test_syncse_partial_and_the_cache_answers_a_rerun_without_a_server(llama_server, tmp_path, capsys):
    source = _write_input(tmp_path, 3)
    out = tmp_path / "syn"
    code = main(["synthesize", "syncse", "--mode", "partial", "--input", str(source), *SHORT,
                 "--seed", "3", "--output", str(out), *_server_args(llama_server)])
    assert code == 0, capsys.readouterr()
    manifest = _check_output(out, rows=3, requests_per_row=2)
    assert manifest["usage"]["cached_requests"] == 0
    records = _read_jsonl(out / "records.jsonl")
    assert records, f"no SynCSE record kept from 3 rows: {manifest['counts']}"
    for record in records:
        assert record["anchor"] in SENTENCES
        assert record["positive"].strip() and record["negative"].strip()
        assert record["positive"] != record["negative"]
    # the rerun goes to a port where nothing listens: every answer must come from the cache
    dead = f"http://127.0.0.1:{free_port()}/v1"
    again = tmp_path / "again"
    code = main(["synthesize", "syncse", "--mode", "partial", "--input", str(source), *SHORT,
                 "--seed", "3", "--output", str(again), "--cache", str(out / "cache.sqlite"), "--max-retries", "0",
                 *_server_args(llama_server)[:2], "--base-url", dead, "--model", llama_server.alias, "--no-progress"])
    assert code == 0, capsys.readouterr()
    rerun = _check_output(again, rows=3, requests_per_row=2)
    assert rerun["usage"]["cached_requests"] == rerun["usage"]["requests"] == 6
    assert [(r["positive"], r["negative"]) for r in _read_jsonl(again / "records.jsonl")] == [
        (r["positive"], r["negative"]) for r in records]


def test_syncse_scratch(llama_server, tmp_path, capsys):
    out = tmp_path / "scratch"
    code = main(["synthesize", "syncse", "--mode", "scratch", "--limit", "2", "--anchors-per-request", "2",
                 *SHORT, "--seed", "1", "--output", str(out),
                 *_server_args(llama_server)])
    assert code == 0, capsys.readouterr()
    anchors = read_manifest(out / "anchors")
    assert anchors is not None and anchors["complete"]
    manifest = read_manifest(out)
    assert manifest["complete"] and "backend_error" not in manifest["counts"]["dropped"]
    rows = manifest["rows_done"]
    assert 0 < rows <= 2
    assert manifest["counts"]["written"] + sum(manifest["counts"]["dropped"].values()) == rows
    for record in _read_jsonl(out / "records.jsonl"):
        assert record["meta"]["mode"] == "scratch" and record["anchor"].strip()


def test_graded_levels_and_json_partial(llama_server, tmp_path, capsys):
    source = _write_input(tmp_path, 1)
    levels = tmp_path / "levels"
    code = main(["synthesize", "graded", "--mode", "levels", "--input", str(source), "--few-shot", "1",
                 "--max-new-tokens", "40", "--output", str(levels), *_server_args(llama_server)])
    assert code == 0, capsys.readouterr()
    _check_output(levels, rows=1, requests_per_row=5)
    for record in _read_jsonl(levels / "records.jsonl"):
        assert record["query"] in SENTENCES and record["positive"].strip()
        assert len(record["negatives"]) == 4 and all(n.strip() for n in record["negatives"])
    # partial: one JSON answer per query, constrained by the server's grammar from response_format
    partial = tmp_path / "partial"
    code = main(["synthesize", "graded", "--mode", "partial", "--input", str(_write_input(tmp_path, 1)),
                 "--max-new-tokens", "96", "--output", str(partial), *_server_args(llama_server)])
    assert code == 0, capsys.readouterr()
    manifest = _check_output(partial, rows=1, requests_per_row=1)
    assert set(manifest["counts"]["dropped"]) <= {"truncated", "schema", "duplicate", "copy", "parse_failure"}


def test_two_stage_run_synthesizes_on_the_server_and_trains_on_it(llama_server, tmp_path, tiny_bert_dir):
    source = _write_input(tmp_path, 4)
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: e2e
output_dir: {tmp_path / 'run'}
seed: 5
stages:
  - name: syn
    command: synthesize syncse
    args:
      mode: partial
      input: {source}
      backend: openai
      base_url: {llama_server.base_url}
      model: {llama_server.alias}
      concurrency: 2
      few_shot: 1
      max_new_tokens: 32
      no_progress: true
  - name: fit
    command: train
    args:
      data: "{{stage:syn}}/records.jsonl"
      model: {tiny_bert_dir}
      epochs: 1
      batch_size: 4
      max_length: 32
      no_dev: true
""", encoding="utf-8")
    assert main(["run", str(config)]) == 0
    syn = tmp_path / "run" / "syn"
    manifest = _check_output(syn, rows=4, requests_per_row=2)
    written = manifest["counts"]["written"]
    assert written >= 1, f"no record to train on: {manifest['counts']}"
    fit = yaml.safe_load((tmp_path / "run" / "fit" / "train_config.yaml").read_text(encoding="utf-8"))
    assert fit["fit"]["train_rows"] == written  # the training stage read exactly what the server wrote
    assert str(syn / "records.jsonl") in str(fit["data"])
    # a second run reuses both stages: nothing is sent to the server or trained again
    started = time.monotonic()
    assert main(["run", str(config)]) == 0
    assert time.monotonic() - started < 30
    assert read_manifest(syn)["usage"] == manifest["usage"]


class _KillAfter:
    """Wraps a backend: after `after` answers, kill the server and restart it on the same port in the background."""

    def __init__(self, inner, server: LlamaServer, after: int) -> None:
        self.inner, self.server, self.after = inner, server, after
        self.name, self.model = inner.name, inner.model
        self.restarted: threading.Thread | None = None
        self.down_for = 1.0

    def generate(self, requests):
        for count, generation in enumerate(self.inner.generate(requests), start=1):
            yield generation
            if count == self.after:
                self.server.kill()

                def restart() -> None:
                    time.sleep(self.down_for)
                    self.server.start()

                self.restarted = threading.Thread(target=restart, daemon=True)
                self.restarted.start()

    def close(self) -> None:
        self.inner.close()


def test_server_killed_mid_run_loses_nothing(tmp_path):
    port = free_port()
    server = LlamaServer("embedded-llm", port=port, n_ctx=2048, threads=1, log=tmp_path / "server.log")
    rows = [InputRow(f"r{i}", s) for i, s in enumerate(SENTENCES[:4])]
    task = SynCSETask(load_pools(), n_examples=1, max_new_tokens=32)
    options = RunOptions(output=tmp_path / "out", seed=2, cache_path=tmp_path / "out" / "cache.sqlite",
                         progress=False, shard_size=2, flush_seconds=0.0)
    try:
        server.start()
        inner = create_backend("openai", model=server.alias, base_url=server.base_url, concurrency=2,
                               max_retries=8, backoff_base=0.5, backoff_max=4.0, timeout=60)
        backend = _KillAfter(inner, server, after=2)
        summary = run_syncse(task, backend, options, rows=rows)
        assert backend.restarted is not None, "the server was never killed"
        backend.restarted.join(120)
        assert inner.retries > 0, "the kill did not hit a request in flight or queued"
        if not summary.complete:  # a run that stops while its server is down resumes once it is back
            summary = run_syncse(task, inner, options, rows=rows)
        assert summary.complete
        _check_output(tmp_path / "out", rows=len(rows), requests_per_row=2)
    finally:
        server.stop()


def test_serve_llm_command_starts_a_server_users_can_reach(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[1] / "src"),
                                                                     os.environ.get("PYTHONPATH", "")] if p)}
    process = subprocess.Popen([sys.executable, "-m", "synthembed", "serve-llm", "embedded-llm", "--port", str(port),
                                "--n-ctx", "512", "--threads", "1"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env)
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("ready:"):
                break
        text = "\n".join(lines)
        base_url = f"http://127.0.0.1:{port}/v1"
        assert lines[0].startswith(f"command:  {sys.executable} -m llama_cpp.server --model "), text
        assert "--chat_format chat_template.default" in lines[0] and f"--port {port}" in lines[0]
        assert f"--backend openai --base-url {base_url} --model embedded-llm" in text
        assert lines[-1].startswith("ready:"), text
        body = json.dumps({"model": "embedded-llm", "max_tokens": 4, "temperature": 0,
                           "messages": [{"role": "user", "content": "Say hello."}]}).encode()
        request = urllib.request.Request(f"{base_url}/chat/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["usage"]["completion_tokens"] <= 4 and answer["choices"][0]["message"]["content"]
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
