"""MGH synthesis: JSON repair and schema validation, the two-step task with a fake LLM, partial mode,
guided JSON decoding, and the level-order check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synthembed.llm.base import ChatRequest
from synthembed.llm.fake import FakeBackend
from synthembed.synthesis.graded import (
    BRAINSTORM_SCHEMA,
    BrainstormTask,
    GradedTask,
    graded_schema,
    level_order_report,
    load_prompts,
    run_graded,
)
from synthembed.synthesis.inputs import rows_from_texts
from synthembed.synthesis.json_repair import JsonAnswerError, parse_json_answer, validate_schema
from synthembed.synthesis.records import iter_records
from synthembed.synthesis.runner import RunOptions

GOOD = {"query": "q text", "positive": "p text", "negatives": ["n one", "n two", "n three", "n four"]}


@pytest.mark.parametrize(
    ("text", "repairs"),
    [
        (json.dumps(GOOD), []),
        ("```json\n" + json.dumps(GOOD) + "\n```", ["code_fence"]),
        ("Sure! Here it is:\n" + json.dumps(GOOD) + "\nHope this helps.", ["surrounding_text"]),
        ('{"query": "q text", "positive": "p text", "negatives": ["n one", "n two", "n three", "n four",],}',
         ["trailing_comma"]),
        ("{\u201cquery\u201d: \u201cq text\u201d, \"positive\": \"p text\", \"negatives\": [\"n one\", \"n two\", "
         "\"n three\", \"n four\"]}", ["smart_quotes"]),
        ("{'query': 'q text', 'positive': 'p text', 'negatives': ['n one', 'n two', 'n three', 'n four']}",
         ["single_quotes"]),
        ('{"query": "q text", // the query\n "positive": "p text", "negatives": ["n one", "n two", "n three", "n four"]}',
         ["comments"]),
    ],
)
def test_repairs(text: str, repairs: list[str]) -> None:
    value, done = parse_json_answer(text, graded_schema())
    assert value == GOOD
    assert done == repairs


def test_truncated_answer_is_closed_but_then_fails_schema() -> None:
    text = '{"query": "q text", "positive": "p text", "negatives": ["n one", "n tw'
    value, repairs = parse_json_answer(text)
    assert repairs == ["closed_truncated"] and value["negatives"] == ["n one", "n tw"]
    with pytest.raises(JsonAnswerError) as info:
        parse_json_answer(text, graded_schema())
    assert info.value.reason == "schema" and "at least 4" in info.value.detail


def test_apostrophes_survive_single_quote_repair() -> None:
    value, _ = parse_json_answer("{'query': \"it's fine\", 'positive': 'don't panic', 'negatives': []}")
    assert value["query"] == "it's fine" and value["positive"] == "don't panic"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("I cannot help with that.", "no_json"), ('{"query": "a" "b"}', "invalid_json"),
     ('{"query": "q", "positive": "p", "negatives": ["a", "b"]}', "schema"),
     ('{"query": "q", "positive": 3, "negatives": ["a", "b", "c", "d"]}', "schema"),
     ('{"query": "q", "positive": "p", "negatives": ["a", "b", "c", "d"], "extra": 1}', "schema")],
)
def test_failures_have_reasons(text: str, reason: str) -> None:
    with pytest.raises(JsonAnswerError) as info:
        parse_json_answer(text, graded_schema())
    assert info.value.reason == reason


def test_validate_schema_paths() -> None:
    errors = validate_schema({"tasks": ["ok", 5]}, BRAINSTORM_SCHEMA)
    assert errors == ["$.tasks[1]: expected string, got int"]
    assert validate_schema({"tasks": ["ok"]}, BRAINSTORM_SCHEMA) == []


def _answer(i: int) -> dict:
    return {"query": f"query about subject {i}", "positive": f"a document answering subject {i}",
            "negatives": [f"level {k} text about subject {i}" for k in (1, 2, 3, 4)]}


def responder(request: ChatRequest) -> str:
    """Brainstorm: fenced near-JSON; graded: valid JSON, except every third task is prose (dropped)."""
    prompt = request.messages[-1]["content"]
    if "Brainstorm" in prompt:
        tasks = [f"Given a question about topic {request.id[:7]} number {k}, retrieve the passage." for k in range(3)]
        return "```json\n" + json.dumps({"tasks": tasks})[:-1] + ",}\n```"
    number = sum(map(ord, prompt)) % 997
    if number % 3 == 0:
        return "Here are some ideas for your task without any JSON."
    return json.dumps(_answer(number))


def test_full_two_step_run(tmp_path: Path) -> None:
    prompts = load_prompts()
    backend = FakeBackend(responder=responder)
    brainstorm = BrainstormTask(prompts, per_request=3)
    task = GradedTask(prompts)
    options = RunOptions(tmp_path / "out", limit=6, seed=1, progress=False)
    summary = run_graded(task, backend, options, brainstorm=brainstorm)
    assert summary.complete
    records = list(iter_records(tmp_path / "out"))
    drops = summary.counts.get("no_json", 0)
    assert len(records) + drops == 6 and len(records) >= 1
    record = records[0]
    assert set(record) >= {"id", "task", "query", "positive", "negatives", "meta"}
    assert [n["level"] for n in record["negatives"]] == [1, 2, 3, 4]
    assert record["task"].startswith("Given a question")
    assert record["meta"]["family"] == "short-long" and record["meta"]["repairs"] == []
    task_records = list(iter_records(tmp_path / "out" / "tasks"))
    assert task_records[0]["meta"]["repairs"] == ["code_fence", "trailing_comma"]
    families = {r["family"] for r in task_records}
    assert families == {"short-long", "long-short"}  # 2 brainstorm requests for 6 tasks, families rotate
    # each graded request carries the demonstration turn and the schema for guided decoding
    request = task.build_request(rows_from_texts(["t"]).rows[0], __import__("random").Random(0), "graded")
    assert [m["role"] for m in request.messages] == ["user", "assistant", "user"]
    assert request.params.response_format["json_schema"]["schema"] == graded_schema()


def test_partial_mode_and_duplicate_drop(tmp_path: Path) -> None:
    def answer(request: ChatRequest) -> str:
        prompt = request.messages[-1]["content"]
        if "same" in prompt.split("\n")[1]:
            return json.dumps({"positive": "same words", "negatives": ["same words", "bb cc", "cc dd", "dd ee"]})
        if "dots" in prompt.split("\n")[1]:
            return json.dumps({"positive": "...", "negatives": ["aa bb", "bb cc", "cc dd", "dd ee"]})
        return json.dumps({"positive": "a paraphrase here", "negatives": ["level one", "level two", "level three",
                                                                         "level four"]})

    rows = rows_from_texts(["A cat sat on the mat.", "same same", "dots dots"])
    summary = run_graded(GradedTask(load_prompts(), partial=True), FakeBackend(responder=answer),
                         RunOptions(tmp_path / "p", progress=False), rows=rows)
    records = list(iter_records(tmp_path / "p"))
    assert summary.counts["duplicate"] == 1 and summary.counts["placeholder"] == 1 and len(records) == 1
    assert records[0]["query"] == "A cat sat on the mat." and records[0]["meta"]["mode"] == "partial"
    assert "query" not in graded_schema(partial=True)["properties"]


class VectorModel:
    """Embeds a text by a lookup table (for the level-order check)."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def encode(self, texts, batch_size=32, normalize_embeddings=True):
        vectors = np.array([self.table[t] for t in texts], dtype=float)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_level_order_report() -> None:
    angle = {"q": 0, "p": 5, "n1": 10, "n2": 20, "n3": 30, "n4": 40, "m1": 40, "m2": 20, "m3": 30, "m4": 10}
    table = {k: [np.cos(np.radians(a)), np.sin(np.radians(a))] for k, a in angle.items()}
    records = [
        {"query": "q", "positive": "p", "negatives": [{"level": i, "text": f"n{i}"} for i in (1, 2, 3, 4)]},
        {"query": "q", "positive": "p", "negatives": [{"level": i, "text": f"m{i}"} for i in (1, 2, 3, 4)]},
    ]
    report = level_order_report(records, VectorModel(table))
    assert report["records"] == 2 and report["fully_ordered"] == 0.5 and report["positive_first"] == 1.0
    # second record at 40, 20, 30, 10 degrees: only the pair (2, 3) has the lower level closer -> 1 of 6
    assert report["pairwise_ordered"] == pytest.approx((6 + 1) / 12)
    assert report["mean_similarity"]["level_1"] == pytest.approx((np.cos(np.radians(10)) + np.cos(np.radians(40))) / 2)


def test_guided_json_makes_a_random_model_write_valid_json(tiny_llama_dir: Path, smollm2_tokenizer) -> None:
    pytest.importorskip("xgrammar")
    import torch
    from transformers import AutoModelForCausalLM, LogitsProcessorList

    from synthembed.synthesis.guided_json import JsonSchemaLogitsProcessor

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 6},
                                               "b": {"type": "array", "items": {"type": "integer"}, "maxItems": 2}},
              "required": ["a", "b"], "additionalProperties": False}
    prompt = smollm2_tokenizer(["Write JSON:", "Something else entirely:"], return_tensors="pt", padding=True)
    processor = JsonSchemaLogitsProcessor(smollm2_tokenizer, model.config.vocab_size, [schema, None])
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=60, do_sample=False,
                             logits_processor=LogitsProcessorList([processor]),
                             pad_token_id=smollm2_tokenizer.pad_token_id)
    text = smollm2_tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert processor.finished(0)  # the grammar closed the object well within 60 tokens
    assert validate_schema(json.loads(text), schema) == []
    free = smollm2_tokenizer.decode(out[1, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert not free.startswith('{"a":')  # the unconstrained row is not forced into the grammar


def test_guided_backend_honours_response_format(tiny_llama_dir: Path) -> None:
    """The transformers backend's processor hook: a random tiny model answers schema-valid JSON; free rows stay free."""
    pytest.importorskip("xgrammar")
    from synthembed.llm.base import SamplingParams
    from synthembed.synthesis.guided_json import guided_transformers_backend, response_format_for

    schema = {"type": "object", "properties": {"tasks": {"type": "array", "items": {"type": "string", "maxLength": 8},
                                                         "maxItems": 2}},
              "required": ["tasks"], "additionalProperties": False}
    backend = guided_transformers_backend(model=str(tiny_llama_dir), batch_size=2)
    requests = [
        ChatRequest("a", ({"role": "user", "content": "List tasks."},),
                    SamplingParams(temperature=0.0, max_new_tokens=60, response_format=response_format_for(schema))),
        ChatRequest("b", ({"role": "user", "content": "Say something."},), SamplingParams(temperature=0.0, max_new_tokens=8)),
    ]
    answers = {g.request_id: g for g in backend.generate(requests)}
    value, _ = parse_json_answer(answers["a"].text, schema)
    assert isinstance(value["tasks"], list)
    assert not answers["b"].text.startswith('{"tasks"')


def test_cli_counts_drops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`synthembed synthesize graded` end to end with the fake backend (its word salad is no JSON: all dropped)."""
    from synthembed.cli import main

    queries = tmp_path / "q.txt"
    queries.write_text("A cat sat on the mat.\nThe sky is blue today.\n", encoding="utf-8")
    code = main(["synthesize", "graded", "--mode", "partial", "--input", str(queries), "--backend", "fake",
                 "--output", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    # the fake answer shuffles the words of the prompt's last line (prose, no JSON object)
    assert manifest["counts"] == {"written": 0, "dropped": {"no_json": 2}}
    assert main(["synthesize", "graded", "--backend", "fake", "--input", str(queries),
                 "--output", str(tmp_path / "x")]) == 2  # full mode brainstorms; an input is an error


def test_copying_the_demonstration_is_dropped() -> None:
    prompts = load_prompts()
    task = GradedTask(prompts, partial=True)
    row = rows_from_texts(["A cat sat on the mat."]).rows[0]
    copied = dict(prompts.partial_example["answer"])
    copied = {"positive": "a feline rested on the rug", "negatives": copied["negatives"]}
    with pytest.raises(Exception) as info:
        task.parse(json.dumps(copied), row, "graded")
    assert getattr(info.value, "reason", "") == "copied_example"
