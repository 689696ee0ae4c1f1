"""The in-process llama.cpp backend on the packaged SmolLM2 GGUF: template, names, errors, JSON, the CLI.

(Seeds, stop strings, limits, token counts and the cache are in test_llm_shared.py, shared with every
backend.) Fails, not skips, without llama-cpp-python: scripts/setup.sh installs it.
"""

from __future__ import annotations

import json

import pytest

from synthembed.cli import main
from synthembed.errors import ModelLoadError
from synthembed.llm import ChatRequest, SamplingParams, create_backend
from synthembed.llm.llamacpp_backend import resolve_gguf
from synthembed.models.embedded import embedded_llm_gguf_path


@pytest.fixture(scope="module")
def backend():
    backend = create_backend("llamacpp", model="embedded-llm", n_ctx=1024, threads=1)
    yield backend
    backend.close()


def _req(rid: str, messages, **params) -> ChatRequest:
    params.setdefault("max_new_tokens", 8)
    return ChatRequest(rid, tuple(messages), SamplingParams(**params))


def test_model_references(tmp_path):
    path, key = resolve_gguf("embedded")
    assert path == embedded_llm_gguf_path() and key.startswith("embedded:")
    assert resolve_gguf(str(path))[1] == f"gguf:{path.resolve()}"
    with pytest.raises(ModelLoadError, match="GGUF"):
        resolve_gguf(str(tmp_path))
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_gguf(str(tmp_path / "missing.gguf"))


def test_cache_name_is_its_own(backend):
    assert backend.name == "llamacpp" and backend.model.startswith("llamacpp:embedded:")
    assert "SmolLM2-135M-Instruct" in backend.model


def test_prompt_is_the_gguf_chat_template(backend, smollm2_tokenizer):
    for messages in ([{"role": "user", "content": "Hello there."}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]):
        text = smollm2_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        expected = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
        generation = backend.answer(_req("t", messages, temperature=0.0))
        assert generation.ok and generation.prompt_tokens == len(expected)


def test_prompt_longer_than_the_context_is_an_error_naming_the_request():
    small = create_backend("llamacpp", model="embedded", n_ctx=64, threads=1)
    try:
        out = list(small.generate([_req("too-long", [{"role": "user", "content": "word " * 200}]),
                                   _req("fine", [{"role": "user", "content": "Hi."}], max_new_tokens=4)]))
    finally:
        small.close()
    by_id = {g.request_id: g for g in out}
    assert not by_id["too-long"].ok and "too-long" in by_id["too-long"].error
    assert by_id["too-long"].finish_reason == "error"
    assert by_id["fine"].ok  # one bad request does not stop the others


def test_response_format_json_is_honoured(backend):
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    request = _req("j", [{"role": "user", "content": "Give a colour as JSON."}], temperature=0.0, max_new_tokens=40,
                   response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    generation = backend.answer(request)
    assert generation.ok and generation.finish_reason == "stop", generation
    assert isinstance(json.loads(generation.text)["colour"], str)


def test_cli_syncse_partial_with_the_llamacpp_backend(tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("A man is playing a guitar on a street corner at night.\n"
                      "Children are running through a sprinkler in the park.\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(["synthesize", "syncse", "--input", str(source), "--backend", "llamacpp", "--model", "embedded",
                 "--threads", "1", "--few-shot", "1", "--max-new-tokens", "32", "--output", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["backend"] == "llamacpp" and manifest["complete"]
    assert manifest["counts"]["written"] + sum(manifest["counts"]["dropped"].values()) == 2
    assert manifest["usage"]["requests"] == 4 and manifest["usage"]["completion_tokens"] > 0
    assert main(["synthesize", "syncse", "--input", str(source), "--backend", "llamacpp", "--model", str(source),
                 "--output", str(tmp_path / "bad")]) == 2
    assert "GGUF" in capsys.readouterr().err
