"""MGH ``levels`` mode: one few-shot request per text, records in the graded format, drops counted."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from synthembed.errors import DataError
from synthembed.llm.base import ChatRequest
from synthembed.llm.fake import FakeBackend
from synthembed.synthesis.graded_levels import LEVEL_SLOTS, LevelsTask, load_levels_prompts
from synthembed.synthesis.inputs import rows_from_texts
from synthembed.synthesis.records import iter_records
from synthembed.synthesis.runner import RunOptions, run_task

ANSWERS = {
    "positive": "A kitten was sitting on the rug.",
    "level1": "A cat sat under the mat.",
    "level2": "A cat is sleeping by the door.",
    "level3": "Dogs often bark at the mail carrier.",
    "level4": "The train leaves at noon every day.",
}


def slot_of(request: ChatRequest) -> str:
    return request.id.rsplit("/", 1)[1]


def test_requests_show_demonstrations_of_their_own_slot() -> None:
    prompts = load_levels_prompts()
    task = LevelsTask(prompts, n_examples=2)
    row = rows_from_texts(["A cat sat on the mat."]).rows[0]
    for slot in LEVEL_SLOTS:
        request = task.build_request(row, random.Random(0), slot)
        assert [m["role"] for m in request.messages] == ["user", "assistant"] * 2 + ["user"]
        assert all(m["content"].startswith(prompts.instructions[slot]) for m in request.messages[::2])
        assert request.messages[-1]["content"].endswith("Sentence: A cat sat on the mat.")
        shown = [e for e in prompts.examples if e["id"] in task._draws[row.id][slot]]
        assert {m["content"] for m in request.messages[1::2]} == {prompts.example_text(e, slot) for e in shown}
    assert prompts.example_text(prompts.examples[0], "level3") == prompts.examples[0]["negatives"][2]


def test_run_writes_graded_records_and_counts_drops(tmp_path: Path) -> None:
    def answer(request: ChatRequest) -> str:
        query = request.messages[-1]["content"].rsplit("Sentence: ", 1)[1]
        if query.startswith("Same") and slot_of(request) == "level3":
            return ANSWERS["level2"]  # a repeat inside the record: dropped as a whole
        if query.startswith("Copy") and slot_of(request) == "level4":
            return query  # a copy of the query: the text's filter drops it
        return ANSWERS[slot_of(request)]

    rows = rows_from_texts(["A cat sat on the mat.", "Same cat sat on the mat.", "Copy cat sat on the mat."])
    summary = run_task(LevelsTask(load_levels_prompts()), rows, FakeBackend(responder=answer),
                       RunOptions(tmp_path / "out", progress=False))
    records = list(iter_records(tmp_path / "out"))
    assert summary.counts["duplicate"] == 1 and summary.counts["copy"] == 1 and len(records) == 1
    record = records[0]
    assert record["query"] == "A cat sat on the mat." and record["positive"] == ANSWERS["positive"]
    assert [n["level"] for n in record["negatives"]] == [1, 2, 3, 4]
    assert [n["text"] for n in record["negatives"]] == [ANSWERS[f"level{i}"] for i in range(1, 5)]
    assert record["meta"]["mode"] == "levels" and set(record["meta"]["draws"]) == set(LEVEL_SLOTS)


def test_copied_demonstration_is_dropped(tmp_path: Path) -> None:
    prompts = load_levels_prompts()
    copied = prompts.examples[0]["negatives"][3]
    backend = FakeBackend(responder=lambda r: copied if slot_of(r) == "level4" else ANSWERS[slot_of(r)])
    summary = run_task(LevelsTask(prompts), rows_from_texts(["A cat sat on the mat."]), backend,
                       RunOptions(tmp_path / "out", progress=False))
    assert summary.counts["copied_example"] == 1


def test_bad_prompt_files_name_the_file_and_line(tmp_path: Path) -> None:
    instructions = tmp_path / "inst.json"
    instructions.write_text(json.dumps({"positive": "p", "level1": "one"}), encoding="utf-8")
    with pytest.raises(DataError, match=r"inst\.json.*level2"):
        load_levels_prompts(instructions=instructions)
    examples = tmp_path / "ex.jsonl"
    good = {"query": "q", "positive": "p", "negatives": ["a", "b", "c", "d"]}
    examples.write_text(json.dumps(good) + "\n" + json.dumps({**good, "negatives": ["a"]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ex\.jsonl.*2"):
        load_levels_prompts(examples=examples)


def test_cli_levels_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from synthembed.cli import main

    queries = tmp_path / "q.txt"
    queries.write_text("A man is playing a guitar on the street corner.\nThe sky is very blue over the hills today.\n",
                       encoding="utf-8")
    code = main(["synthesize", "graded", "--mode", "levels", "--input", str(queries), "--backend", "fake",
                 "--few-shot", "1", "--output", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    written, dropped = manifest["counts"]["written"], sum(manifest["counts"]["dropped"].values())
    assert written + dropped == 2
    assert manifest["config"]["task"] == "graded-levels" and manifest["config"]["task_config"]["n_examples"] == 1
    for record in iter_records(tmp_path / "out"):
        assert len(record["negatives"]) == 4
