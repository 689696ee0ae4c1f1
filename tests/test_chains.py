"""Ranked chains: pure parts table-tested, the generation loop on a tiny random Llama, resume, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from synthembed.errors import DataError
from synthembed.synthesis.chains import (
    ChainConfig,
    chain_drop_reason,
    chain_tau,
    clean_output,
    generate_chains,
    kendall_tau,
    load_prompt_template,
    render_prompt,
    tau_summary,
)
from synthembed.synthesis.inputs import rows_from_texts
from synthembed.synthesis.records import RecordStore, iter_records


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ('  "A cat sat."  ', "A cat sat."),
        ("```A cat sat.```", "A cat sat."),
        ("`'A cat sat.'`", "A cat sat."),
        ("“A cat sat.”", "A cat sat."),
        ("It's fine", "It's fine"),  # inner apostrophes stay
        ('""', ""),
    ],
)
def test_clean_output(raw, clean):
    assert clean_output(raw) == clean


@pytest.mark.parametrize(
    ("sentences", "reason"),
    [
        (["s", "a", "b", "c"], None),
        (["s", "a", "b\nc", "d"], "newline"),
        (["s", "a", "", "d"], "empty"),
        (["s", "a", "b", "b", "b"], "repeated_tail"),  # last occurs 3 times
        (["s", "b", "a", "b", "b", "c"], "repeated_tail"),  # second-to-last occurs 3 times
        (["s", "a", "a", "b", "c"], None),  # a repeat that is not in the tail
        (["s", "a", "b", "a", "b"], None),  # tail sentences twice only
    ],
)
def test_chain_drop_reason(sentences, reason):
    assert chain_drop_reason(sentences) == reason


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = [0.3, 0.1, 0.1, 0.5, 0.2, 0.9], [1, 2, 3, 4, 4, 0]
    assert kendall_tau(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic)
    assert chain_tau([0.9, 0.8, 0.5, 0.4]) == pytest.approx(1.0)  # similarity to s0 falls: tau = 1
    assert chain_tau([0.4, 0.5, 0.8]) == pytest.approx(-1.0)


def test_tau_summary():
    s = tau_summary([1.0, 0.5, -0.2, float("nan")])
    assert s["count"] == 3 and s["max"] == 1.0 and s["min"] == -0.2
    assert sum(s["histogram"]["counts"]) == 3
    assert tau_summary([]) == {"count": 0}


def test_prompt_template(tmp_path):
    template = load_prompt_template()
    assert "entailment" in template and template.count("{x}") == 1
    assert render_prompt(template, "A {b} c").count("A {b} c") == 1
    bad = tmp_path / "p.txt"
    bad.write_text("no placeholder", encoding="utf-8")
    with pytest.raises(DataError, match="exactly once"):
        load_prompt_template(bad)


def test_config_limits():
    with pytest.raises(ValueError):
        ChainConfig(max_new_tokens=101)
    with pytest.raises(ValueError):
        ChainConfig(rounds=0)


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama_dir):
    from synthembed.llm.guidance import load_causal_lm

    return load_causal_lm(str(tiny_llama_dir))


SEEDS = ["A man plays a guitar.", "Two dogs run in the snow.", "The market closed higher today.", "She reads a book."]


def _keep_everything(monkeypatch):
    """Random tiny models write empty or multi-line text; make every output a usable one-line sentence."""
    monkeypatch.setattr("synthembed.synthesis.chains.chain_drop_reason", lambda s: None)
    monkeypatch.setattr("synthembed.synthesis.chains.clean_output", lambda t: "w " + " ".join(t.split()))


def _run(tiny_lm, out, rows, config, **kw):
    model, tokenizer = tiny_lm
    store = RecordStore(out, {"test": 1}, shard_size=2, flush_seconds=1e9)
    result = generate_chains(model, tokenizer, rows, config, store, template=load_prompt_template(), **kw)
    store.finish(order=[r.id for r in rows], complete=result["complete"])
    return store, result


def test_generate_chains_records_and_counts(tiny_lm, tmp_path, monkeypatch):
    """Round k must send P(s_{k-1}) as conditional and P(s_{k-2}) as negative (none in round 1)."""
    import synthembed.llm.guidance as guidance

    seen = []
    real = guidance.guided_generate

    def spy(model, requests, params, **kw):
        seen.append([(list(r.prompt_ids), None if r.negative_ids is None else list(r.negative_ids)) for r in requests])
        return real(model, requests, params, **kw)

    monkeypatch.setattr(guidance, "guided_generate", spy)
    rows = rows_from_texts(SEEDS).rows
    config = ChainConfig(rounds=3, max_new_tokens=6, batch_size=3)
    # keep every chain: a teacher that always sees falling similarity, no filters on content
    _keep_everything(monkeypatch)
    store, result = _run(tiny_lm, tmp_path / "out", rows, config, teacher_similarities=lambda cs: [[0.9, 0.5, 0.1] for _ in cs])
    records = {r["id"]: r for r in iter_records(tmp_path / "out")}
    assert set(records) == {r.id for r in rows}
    for row in rows:
        rec = records[row.id]
        assert rec["sentences"][0] == row.text and len(rec["sentences"]) == 4
        assert rec["meta"]["teacher_tau"] == pytest.approx(1.0)
    _, tokenizer = tiny_lm
    from synthembed.synthesis.chains import _chat_ids

    template = load_prompt_template()
    first_batch_round2 = seen[1]
    sents = records[rows[0].id]["sentences"]
    assert seen[0][0] == (_chat_ids(tokenizer, render_prompt(template, sents[0])), None)
    assert first_batch_round2[0] == (
        _chat_ids(tokenizer, render_prompt(template, sents[1])),
        _chat_ids(tokenizer, render_prompt(template, sents[0])),
    )
    assert len(seen) == 6  # 2 batches (3 + 1 chains) x 3 rounds
    assert result["taus"] == [pytest.approx(1.0)] * 4


def test_tau_filter_drops_and_resume(tiny_lm, tmp_path, monkeypatch):
    _keep_everything(monkeypatch)
    rows = rows_from_texts(SEEDS).rows
    config = ChainConfig(rounds=2, max_new_tokens=4, batch_size=2, min_tau=0.0)
    out = tmp_path / "out"
    # first run: only the first two rows (as if killed after one batch)
    _run(tiny_lm, out, rows[:2], config, teacher_similarities=lambda cs: [[0.1, 0.9] for _ in cs])
    store, result = _run(tiny_lm, out, rows, config, teacher_similarities=lambda cs: [[0.9, 0.1] for _ in cs])
    assert store.counts["teacher_order"] == 2 and store.counts["written"] == 2
    assert result["taus"] == [pytest.approx(1.0)] * 2  # the resumed run generated only the two new rows
    dropped = [json.loads(line) for p in sorted((out / "dropped").glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert {d["id"] for d in dropped} == {rows[0].id, rows[1].id}
    assert all(d["reason"] == "teacher_order" and d["meta"]["teacher_tau"] == -1.0 for d in dropped)
    merged = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in merged] == [rows[2].id, rows[3].id]


def test_token_budget_stops_early(tiny_lm, tmp_path):
    rows = rows_from_texts(SEEDS).rows
    config = ChainConfig(rounds=2, max_new_tokens=4, batch_size=1)
    store, result = _run(tiny_lm, tmp_path / "o", rows, config, token_budget=1)
    assert not result["complete"] and len(store.done_ids) == 1


def test_cli_chains_end_to_end(tiny_llama_dir, tmp_path, capsys):
    from synthembed.cli import main

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(SEEDS[:3]) + "\n\n" + SEEDS[0] + "\n", encoding="utf-8")
    out = tmp_path / "chains"
    argv = ["synthesize", "chains", "--input", str(seeds), "--model", str(tiny_llama_dir), "--output", str(out),
            "--rounds", "2", "--max-new-tokens", "4", "--batch-size", "2", "--no-progress"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["rows_done"] == 3
    assert manifest["config"]["rounds"] == 2 and manifest["config"]["guidance_scale"] == 1.5
    assert manifest["counts"]["input_skipped"] == {"duplicate_input": 1, "empty": 1}
    total = manifest["counts"]["written"] + sum(manifest["counts"]["dropped"].values())
    assert total == 3
    # resuming with another guidance scale is refused (it would mix two datasets)
    assert main([*argv, "--guidance-scale", "2.0"]) == 2
    assert "different configuration" in capsys.readouterr().err
    # --min-tau without a teacher is a clear error
    assert main([*argv, "--min-tau", "0.2"]) == 2


def test_left_padding_does_not_change_greedy_chain(tiny_lm):
    """A chain generated alone equals the same chain generated in a batch with longer prompts."""
    from synthembed.synthesis.chains import generate_chain_batch

    model, tokenizer = tiny_lm
    rows = rows_from_texts(["Short.", "A much longer seed sentence with many more words than the first one."]).rows
    config = ChainConfig(rounds=3, max_new_tokens=5, batch_size=2)
    template = load_prompt_template()
    together = generate_chain_batch(model, tokenizer, rows, config, template)
    alone = generate_chain_batch(model, tokenizer, rows[:1], config, template)
    assert together[0]["sentences"] == alone[0]["sentences"]
    assert torch.get_default_dtype() == torch.float32


def test_interrupted_run_keeps_rows_and_tau_summary(tiny_llama_dir, tiny_bert_dir, tmp_path, monkeypatch):
    """A time box (SIGINT) mid-run: rows done so far are on disk and the manifest has the tau summary."""
    import synthembed.synthesis.chains as chains_mod

    def stop_after_one(model, tokenizer, rows, config, store, **kw):
        store.add({"id": rows[0].id, "sentences": [rows[0].text, "a", "b"], "meta": {"teacher_tau": 0.5}})
        raise KeyboardInterrupt

    monkeypatch.setattr(chains_mod, "generate_chains", stop_after_one)
    out = tmp_path / "boxed"
    with pytest.raises(KeyboardInterrupt):
        chains_mod.run_chains(rows_from_texts(SEEDS), ChainConfig(rounds=2), out, model=str(tiny_llama_dir),
                              teacher=str(tiny_bert_dir), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["counts"]["written"] == 1
    assert manifest["teacher_tau"]["count"] == 1 and manifest["teacher_tau"]["mean"] == 0.5
