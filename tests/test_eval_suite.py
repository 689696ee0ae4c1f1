"""The suite: encode-once de-duplication, longest-first order, results shape, dev evaluator, mteb hint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from synthembed.evaluation.dev import DevSTSEvaluator
from synthembed.evaluation.encoding import encode_texts, unique_longest_first
from synthembed.evaluation.hash_encoder import HashEncoder
from synthembed.evaluation.report import format_table
from synthembed.evaluation.suite import evaluate_model, expand_task_names, json_safe

HEADER = "score\tsentence1\tsentence2\n"


def make_data(root: Path) -> Path:
    sts = root / "sts"
    sts.mkdir(parents=True)
    (sts / "stsb.test.tsv").write_text(
        HEADER + "5.0\tthe cat sat\tthe cat sat down\n1.0\tthe cat sat\ta plane flew\n3.0\tdogs run\tdogs run fast\n"
    )
    (sts / "sickr.test.tsv").write_text(HEADER + "4.5\tdogs run\tdogs are running\n1.5\tthe cat sat\tsoup is hot\n0.5\tx\ty\n")
    (sts / "stsb.dev.tsv").write_text(HEADER + "4.0\tdev one\tdev one two\n1.0\tdev three\tfour\n2.0\ta b\ta c\n")
    (sts / "sickr.trial.tsv").write_text(HEADER + "4.0\ttrial one\ttrial one two\n1.0\ttrial\tzzz\n3.0\tp q\tp r\n")
    return root


def test_texts_of_all_tasks_are_encoded_once_longest_first(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    encoder = HashEncoder()
    results = evaluate_model(encoder, "stsb,sickr", data_dir=data, show_progress=False)
    assert len(encoder.calls) == 1
    sent = encoder.calls[0]
    assert len(sent) == len(set(sent))  # 'the cat sat' and 'dogs run' appear in both tasks, sent once
    assert "the cat sat" in sent and "dogs run" in sent
    assert [len(t) for t in sent] == sorted((len(t) for t in sent), reverse=True)
    assert results["config"]["unique_texts"] == len(sent)


def test_results_shape_and_average(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    results = evaluate_model(HashEncoder(), ["sts7"], data_dir=data, show_progress=False, model_name="hash")
    assert results["model"] == "hash"
    assert list(results["tasks"]) == ["stsb", "sickr"]
    for name in ("stsb", "sickr"):
        entry = results["tasks"][name]
        assert entry["split"] == "test" and entry["n"] == 3 and -100 <= entry["spearman"] <= 100
    expected = np.mean([results["tasks"]["stsb"]["spearman"], results["tasks"]["sickr"]["spearman"]])
    assert results["average"] == pytest.approx(expected)
    assert results["config"]["split"] == "test" and results["config"]["data_dir"] == str(data)
    assert "numpy" in results["versions"] and "python" in results["versions"]
    json.dumps(json_safe(results), allow_nan=False)
    table = format_table(results)
    assert "stsb" in table and "STS average over 2 task(s)" in table and "skipped sts12" in table


def test_results_are_reproducible(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    first = evaluate_model(HashEncoder(), "stsb,sickr", data_dir=data, show_progress=False)
    second = evaluate_model(HashEncoder(), "stsb,sickr", data_dir=data, show_progress=False)
    assert first["tasks"] == second["tasks"]


def test_expand_task_names() -> None:
    assert expand_task_names("sts7")[:2] == ["sts12", "sts13"] and len(expand_task_names("sts7")) == 7
    assert expand_task_names(["stsb, STSB", "sickr", "stsb"]) == ["stsb", "sickr"]
    assert expand_task_names("mteb:SciDocsRR,rerank:My.jsonl") == ["mteb:SciDocsRR", "rerank:My.jsonl"]
    with pytest.raises(ValueError, match="no tasks"):
        expand_task_names(" , ")


def test_unknown_task_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown task 'nonsense'"):
        evaluate_model(HashEncoder(), "nonsense", data_dir=tmp_path, show_progress=False)


def test_unique_longest_first_is_stable() -> None:
    assert unique_longest_first(["bb", "a", "cc", "bb", "ddd"]) == ["ddd", "bb", "cc", "a"]
    table = encode_texts(HashEncoder(dim=8), [])
    assert table.index == {}


def test_json_safe_replaces_nan() -> None:
    assert json_safe({"a": float("nan"), "b": [np.float32(1.5)], "c": {"d": np.int64(3)}}) == {
        "a": None,
        "b": [1.5],
        "c": {"d": 3},
    }


def test_mteb_task_without_mteb_is_skipped_with_install_hint(tmp_path: Path) -> None:
    try:
        import mteb  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("mteb is installed; this test covers the missing-package path")
    results = evaluate_model(HashEncoder(), "mteb:STS12", data_dir=tmp_path, show_progress=False)
    assert "pip install" in results["skipped"]["mteb:STS12"]


def test_dev_evaluator_reads_only_dev_sets(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    (data / "sts" / "stsb.test.tsv").write_text("garbage that would fail to parse\n")
    (data / "sts" / "sickr.test.tsv").unlink()
    evaluator = DevSTSEvaluator(data)
    encoder = HashEncoder()
    metrics = evaluator(encoder)
    assert set(metrics) == {"dev_stsb_spearman", "dev_sickr_spearman", "dev_mean_spearman"}
    assert evaluator.primary_metric == "dev_mean_spearman" and evaluator.greater_is_better
    assert metrics["dev_mean_spearman"] == pytest.approx((metrics["dev_stsb_spearman"] + metrics["dev_sickr_spearman"]) / 2)
    assert all("dev" in t or "trial" in t or len(t) < 6 for t in encoder.calls[0])
    suite = evaluate_model(HashEncoder(), "stsb,sickr", split="dev", data_dir=data, show_progress=False)
    assert math.isclose(suite["tasks"]["stsb"]["spearman"], metrics["dev_stsb_spearman"], abs_tol=1e-9)
    with pytest.raises(ValueError, match="never read test"):
        DevSTSEvaluator(data, split="test")


def test_dev_evaluator_in_sentence_transformers_trainer_contract(tmp_path: Path) -> None:
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

    evaluator = DevSTSEvaluator(make_data(tmp_path), tasks=("stsb",))
    assert isinstance(evaluator, BaseEvaluator)
    metrics = evaluator(HashEncoder(), output_path=None, epoch=1, steps=10)
    assert evaluator.primary_metric in metrics and set(metrics) == {"dev_stsb_spearman", "dev_mean_spearman"}


def test_token_budget_batches_bound_padded_tokens() -> None:
    from synthembed.evaluation.encoding import token_budget_batches

    lengths = [40, 30, 20, 20, 10, 10, 10, 10, 10, 5, 5, 1]
    batches = token_budget_batches(lengths, batch_size=2)
    covered = [i for b in batches for i in range(b.start, b.stop)]
    assert covered == list(range(len(lengths)))  # every text once, in order
    assert batches[0] == slice(0, 2)  # the first batch is exactly batch_size texts
    for batch in batches:
        assert (batch.stop - batch.start) * lengths[batch.start] <= 2 * 40  # padded tokens within budget
    assert len(batches) < len(lengths) / 2  # shorter texts share larger batches
    assert token_budget_batches([], 4) == []


def test_token_budget_encoding_matches_plain_encode(tiny_bert_dir: Path) -> None:
    from synthembed.evaluation.encoding import token_lengths
    from synthembed.models.encoder import load_encoder

    model = load_encoder(tiny_bert_dir, max_length=12)
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(40)] + ["a much longer text " * 10]
    lengths = token_lengths(model, texts)
    assert lengths is not None and max(lengths) == 12  # truncation applied like the model does
    table = encode_texts(model, texts, batch_size=4)
    plain = encode_texts(model, texts, batch_size=4, token_budget=False)
    assert table.index.keys() == plain.index.keys()
    np.testing.assert_allclose(table.lookup(texts), plain.lookup(texts), atol=1e-5)


def test_mteb_glue_with_a_stand_in_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mteb>=2 call shape (get_tasks -> evaluate -> task_results) mapped into our results."""
    import sys
    import types

    calls = {}

    class FakeResult:
        scores = {"test": [{"main_score": 0.5, "hf_subset": "default"}]}

        def get_score(self) -> float:
            return 0.5

    def get_tasks(tasks):
        if tasks == ["Missing"]:
            raise KeyError("Missing")
        return [types.SimpleNamespace(metadata=types.SimpleNamespace(main_score="main_score", name=tasks[0], type="Retrieval"))]

    def evaluate(model, tasks, encode_kwargs, **kwargs):
        calls["encode_kwargs"] = encode_kwargs
        calls["model"] = model
        return types.SimpleNamespace(task_results=[FakeResult()])

    fake = types.ModuleType("mteb")
    fake.get_tasks, fake.evaluate, fake.__version__ = get_tasks, evaluate, "2.0-fake"
    monkeypatch.setitem(sys.modules, "mteb", fake)
    # the encoder wrapper is built on the real mteb's AbsEncoder (tests/test_mteb_bridge.py); stand it in here
    monkeypatch.setattr("synthembed.evaluation.mteb_runner.MTEBEncoder", lambda model: ("wrapped", model))
    results = evaluate_model(HashEncoder(), "mteb:STS12,mteb:Missing", batch_size=7, show_progress=False)
    assert results["tasks"]["mteb:STS12"]["main_score"] == pytest.approx(50.0)
    assert results["tasks"]["mteb:STS12"]["metric"] == "main_score" and calls["model"][0] == "wrapped"
    assert results["tasks"]["mteb:STS12"]["splits"] == {"test": [50.0]}
    assert calls["encode_kwargs"] == {"batch_size": 7}
    assert "does not know task 'Missing'" in results["skipped"]["mteb:Missing"]
    assert results["average"] is None  # MTEB scores do not enter the STS average
