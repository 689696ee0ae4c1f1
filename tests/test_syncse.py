"""SynCSE: pools, request building (table-tested), parsing/filters, partial and scratch runs on the fake backend, CLI."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from synthembed.cli import main
from synthembed.errors import DataError
from synthembed.llm import ChatRequest
from synthembed.llm.fake import FakeBackend
from synthembed.synthesis.filters import FilterConfig, check_output, clean_output, count_sentences, normalize
from synthembed.synthesis.inputs import InputRow, rows_from_texts
from synthembed.synthesis.runner import Drop, RunOptions
from synthembed.synthesis.syncse import AnchorTask, SynCSETask, load_pools, run_syncse

ANCHOR = "The museum opens at nine on weekdays and at ten on Sundays."


@pytest.fixture(scope="module")
def pools():
    return load_pools()


def test_packaged_pools_meet_the_spec(pools):
    assert len(pools.positive) >= 4 and len(pools.negative) >= 4
    assert len(pools.examples) >= 18
    assert len({e["genre"] for e in pools.examples}) >= 12
    assert len({e["id"] for e in pools.examples}) == len(pools.examples)
    assert len(pools.genres) >= 8 and len(pools.topics) >= 30
    for example in pools.examples:  # our own demonstrations pass our own filters
        check_output(example["positive"], example["anchor"])
        check_output(example["negative"], example["anchor"])


def test_build_request_structure(pools):
    task = SynCSETask(pools)
    row = InputRow("L7", ANCHOR)
    for slot, pool in (("positive", pools.positive), ("negative", pools.negative)):
        request = task.build_request(row, random.Random(1), slot)
        messages = request.messages
        assert len(messages) == 2 * 5 + 1
        assert [m["role"] for m in messages] == ["user", "assistant"] * 5 + ["user"]
        instruction = messages[-1]["content"].split("\n\nSentence: ")[0]
        assert instruction in pool
        assert messages[-1]["content"].endswith(f"Sentence: {ANCHOR}")
        shown = [m["content"].split("\n\nSentence: ")[1] for m in messages[:-1:2]]
        by_anchor = {e["anchor"]: e for e in pools.examples}
        assert len(set(shown)) == 5 and all(a in by_anchor for a in shown)
        for user, assistant in zip(messages[:-1:2], messages[1:-1:2]):
            assert user["content"].startswith(instruction)  # the same instruction in every turn
            assert assistant["content"] == by_anchor[user["content"].split("\n\nSentence: ")[1]][slot]
        assert request.params.temperature == 1.0 and request.params.seed is not None
        assert request.params.stop == ("\n\n",)


def test_draws_are_diverse_and_reproducible(pools):
    task = SynCSETask(pools)
    row = InputRow("L1", ANCHOR)
    again = task.build_request(row, random.Random(3), "positive")
    assert again == task.build_request(row, random.Random(3), "positive")
    instructions, example_sets, seeds = Counter(), set(), set()
    for seed in range(200):
        request = task.build_request(row, random.Random(seed), "negative")
        instructions[request.messages[-1]["content"].split("\n\n")[0]] += 1
        example_sets.add(tuple(m["content"] for m in request.messages[:-1:2]))
        seeds.add(request.params.seed)
    assert len(instructions) == len(pools.negative) and min(instructions.values()) > 20
    assert len(example_sets) > 150 and len(seeds) == 200


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("The museum is open from nine on workdays and from ten on Sundays.", "ok"),
        ('"On weekdays the museum opens at 9, on Sundays at 10."', "ok"),
        ("Result: The museum opens at ten on weekdays and at nine on Sundays.", "ok"),
        ("Rewritten sentence: On weekdays, doors open at nine; on Sundays at ten.", "ok"),
        ("", "empty"),
        ("   ``` ```  ", "empty"),
        ("I'm sorry, but I cannot rewrite this sentence.", "refusal"),
        ("As an AI language model, I will not do that.", "refusal"),
        ("Sure, here is the rewritten sentence:", "meta_text"),
        ("Here's a paraphrase: the museum opens at nine.", "meta_text"),
        ("The museum opens at nine. This sentence keeps the original meaning.", "meta_text"),
        ("The sentence doesn't contain any information about the museum.", "meta_text"),
        ("The museum opens at nine.\nIt opens at ten on Sundays.", "multi_sentence"),
        ("The museum opens at nine. On Sundays it opens at ten. Tickets are cheap.", "multi_sentence"),
        ("the museum opens at nine on weekdays, and at ten on sundays", "copy"),
        ("Museum.", "length"),
        ("The large municipal museum of modern and contemporary art in the old town opens its doors at nine "
         "in the morning on every single weekday and at ten in the morning on Sundays and public holidays "
         "throughout the whole year.", "length"),
    ],
)
def test_parse_table(pools, answer, expected):
    task = SynCSETask(pools)
    row = InputRow("L1", ANCHOR)
    if expected == "ok":
        out = task.parse(answer, row, "positive")
        assert out and '"' not in out and not out.lower().startswith(("result", "rewritten"))
    else:
        with pytest.raises(Drop) as info:
            task.parse(answer, row, "positive")
        assert info.value.reason == expected


def test_filter_helpers():
    assert normalize("Hello, World!  ") == "hello world"
    assert count_sentences("Dr. Smith arrived. He sat down.") == 2
    assert count_sentences("It cost 3.5 dollars in the U.S. today.") == 1
    assert clean_output('```\n"quoted"\n```') == "quoted"
    assert clean_output("**Result:** Fine text.") == "Fine text."
    loose = FilterConfig(max_length_ratio=100)
    long_answer = " ".join(["word"] * 60)
    assert check_output(long_answer, "a short anchor here", loose) == long_answer


def test_assemble_drops_identical_positive_and_negative(pools):
    task = SynCSETask(pools)
    row = InputRow("L1", ANCHOR)
    with pytest.raises(Drop) as info:
        task.assemble(row, {"positive": "Same words here.", "negative": "same words HERE"})
    assert info.value.reason == "duplicate"
    record = task.assemble(row, {"positive": "A.", "negative": "B."})
    assert set(record) == {"id", "anchor", "positive", "negative", "meta"} and record["meta"]["mode"] == "partial"


def _scripted_answer(request: ChatRequest) -> str:
    """A plausible LLM: a positive/negative for SynCSE requests, numbered sentences for scratch requests."""
    last = request.messages[-1]["content"]
    if "sentences in the style of" in last:
        topic = last.split("topics and similar subjects: ")[1].split(",")[0]
        return "\n".join(f"{i + 1}. Here we write about {topic} in example sentence number {i}." for i in range(6))
    anchor = last.split("Sentence: ", 1)[1]
    words = anchor.rstrip(".").split()
    if "contradict" in last.lower() or "different or opposite" in last or "no longer true" in last:
        return " ".join(["Not"] + words) + "."
    return "In other words, " + " ".join(reversed(words)).lower() + "."


def test_partial_run_on_fake_backend(tmp_path, pools):
    rows = rows_from_texts([f"The {w} was seen near the river on a cold morning." for w in ("fox", "owl", "deer")]
                           + ["I cannot do this", "Short."])
    task = SynCSETask(pools)
    backend = FakeBackend(responder=_scripted_answer)
    summary = run_syncse(task, backend, RunOptions(output=tmp_path / "out", progress=False), rows=rows)
    assert summary.complete
    written = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert summary.counts["written"] == len(written) == 4
    assert summary.counts["refusal"] == 1  # "Not I cannot do this." reads as a refusal
    assert sum(summary.counts.values()) == 5  # every row accounted for
    record = written[0]
    assert record["anchor"].startswith("The fox") and record["positive"].startswith("In other words")
    assert record["negative"].startswith("Not The fox")
    assert set(record["meta"]["draws"]) == {"positive", "negative"}
    assert len(record["meta"]["draws"]["positive"]["examples"]) == 5
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "out" / "records.jsonl"), split="train")
    assert loaded.num_rows == 4 and {"anchor", "positive", "negative"} <= set(loaded.column_names)


def test_scratch_run_on_fake_backend(tmp_path, pools):
    task = SynCSETask(pools, mode="scratch")
    anchors = AnchorTask(pools, per_request=6)
    backend = FakeBackend(responder=_scripted_answer)
    summary = run_syncse(task, backend, RunOptions(output=tmp_path / "out", limit=10, progress=False),
                         anchor_task=anchors)
    assert summary.complete
    written = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert len(written) == 10
    assert all(r["meta"]["mode"] == "scratch" and r["meta"]["genre"] in pools.genres for r in written)
    assert len({r["anchor"] for r in written}) == 10
    assert (tmp_path / "out" / "anchors" / "manifest.json").is_file()
    second = FakeBackend(responder=_scripted_answer)
    again = run_syncse(task, second, RunOptions(output=tmp_path / "out", limit=10, progress=False), anchor_task=anchors)
    assert second.calls == [] and again.counts == summary.counts  # resumed: nothing left to send


def test_anchor_parse_strips_numbering_and_meta(pools):
    task = AnchorTask(pools)
    text = "Sure! Here are the sentences:\n1. The river flooded the old mill last spring.\n- Tiny.\n2) Bees love clover fields in the early summer heat.\nI hope this helps!"
    assert task.parse(text, InputRow("S0", "x"), "anchors") == [
        "The river flooded the old mill last spring.",
        "Bees love clover fields in the early summer heat.",
    ]
    with pytest.raises(Drop):
        task.parse("Sure, here you go:", InputRow("S0", "x"), "anchors")


def test_user_pools_replace_packaged_ones(tmp_path):
    (tmp_path / "pos.txt").write_text("# comment\nSay it again differently.\n")
    (tmp_path / "ex.jsonl").write_text(json.dumps({"anchor": "a b", "positive": "b a", "negative": "not a b"}) + "\n")
    pools = load_pools(positive=tmp_path / "pos.txt", examples=tmp_path / "ex.jsonl")
    assert pools.positive == ("Say it again differently.",) and len(pools.examples) == 1
    assert pools.fingerprint()["sha256"] != load_pools().fingerprint()["sha256"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"anchor": "a"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1"):
        load_pools(examples=tmp_path / "bad.jsonl")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="empty"):
        load_pools(negative=tmp_path / "empty.txt")
    with pytest.raises(ValueError):
        SynCSETask(pools)  # 5 examples from a pool of 1


def test_cli_partial_with_fake_backend(tmp_path, capsys):
    source = tmp_path / "anchors.txt"
    source.write_text("\n".join(f"A sentence about topic {i} that is long enough to paraphrase." for i in range(6))
                      + "\n\n")
    out = tmp_path / "run"
    code = main(["synthesize", "syncse", "--input", str(source), "--limit", "4", "--backend", "fake",
                 "--output", str(out), "--no-progress", "--seed", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "records written" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 3 and manifest["config"]["backend"] == "fake"
    assert manifest["rows_done"] == 4 and manifest["complete"]
    assert (out / "cache.sqlite").is_file()


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["synthesize", "syncse", "--backend", "fake", "--output", str(tmp_path / "o")]) == 2
    assert "needs anchors" in capsys.readouterr().err
    missing = tmp_path / "nope.txt"
    assert main(["synthesize", "syncse", "--input", str(missing), "--backend", "fake", "--output",
                 str(tmp_path / "o")]) == 2
    assert "nope.txt" in capsys.readouterr().err
