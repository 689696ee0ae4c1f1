"""The paired bootstrap of evaluation.compare on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from synthembed.evaluation.compare import compare_results, format_changes, paired_change, per_item_mean, per_item_sts
from synthembed.evaluation.metrics import spearman


def sts_result(gold: np.ndarray, cosine: np.ndarray, texts: list[str] | None = None) -> dict:
    texts = texts or [f"s{i}" for i in range(len(gold))]
    return {"spearman": 100 * spearman(gold, cosine), "split": "test", "n": len(gold),
            "per_item": per_item_sts(texts, texts, gold, cosine)}


def embeddings_model(n: int = 300, dim: int = 16, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of unit vectors whose gold score is a noisy function of their cosine."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim))  # (n, dim)
    b = a + rng.normal(scale=rng.uniform(0.2, 2.0, size=(n, 1)), size=(n, dim))  # (n, dim)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    gold = np.einsum("nd,nd->n", a, b) + rng.normal(scale=0.1, size=n)  # (n,)
    return a, b, gold


def test_a_model_against_itself_changes_by_zero_with_a_zero_width_interval() -> None:
    a, b, gold = embeddings_model()
    result = sts_result(gold, np.einsum("nd,nd->n", a, b))
    change = paired_change("stsb", result, result)
    assert change.delta == 0.0 and change.low == 0.0 and change.high == 0.0
    assert change.covers_zero and not change.significant


def test_a_copy_with_shuffled_embeddings_is_flagged_significant() -> None:
    a, b, gold = embeddings_model()
    base = sts_result(gold, np.einsum("nd,nd->n", a, b))
    shuffled = np.random.default_rng(2).permutation(len(b))
    other = sts_result(gold, np.einsum("nd,nd->n", a, b[shuffled]))  # same pairs, embeddings scrambled
    change = paired_change("stsb", base, other)
    assert change.delta < -50 and change.high < 0 and change.significant
    assert change.low < change.delta < change.high


def test_interval_covers_the_true_change_about_95_percent_of_the_time() -> None:
    """Bivariate normal data: Spearman of x with gold + noise(s) is (6/pi) asin(r/2), r = 1/sqrt(1+s^2)."""
    def true_spearman(noise: float) -> float:
        r = 1 / np.sqrt(1 + noise**2)
        return 100 * 6 / np.pi * np.arcsin(r / 2)

    noise_a, noise_b, shared = 1.0, 0.8, 0.5
    truth = true_spearman(np.hypot(noise_b, shared)) - true_spearman(np.hypot(noise_a, shared))
    rng = np.random.default_rng(7)
    covered, trials, n = 0, 200, 100
    for trial in range(trials):
        gold = rng.normal(size=n)
        common = shared * rng.normal(size=n)  # noise both models share: the pairing matters
        base = sts_result(gold, gold + common + noise_a * rng.normal(size=n))
        other = sts_result(gold, gold + common + noise_b * rng.normal(size=n))
        change = paired_change("synthetic", base, other, n_resamples=400, seed=trial)
        covered += change.low <= truth <= change.high
    assert 0.90 <= covered / trials <= 0.99, covered / trials


def test_mean_statistic_pairs_the_items_and_different_items_are_refused() -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(size=200)
    base = {"ndcg@10": 100 * values.mean(), "per_item": per_item_mean([f"q{i}" for i in range(200)], values, "ndcg@10")}
    better = values + 0.05 + rng.normal(scale=0.01, size=200)
    other = {"ndcg@10": 100 * better.mean(), "per_item": per_item_mean([f"q{i}" for i in range(200)], better, "ndcg@10")}
    change = paired_change("scifact", base, other)
    assert change.delta == pytest.approx(100 * (better.mean() - values.mean()), abs=1e-3)
    assert change.significant and change.high - change.low < 1.0  # paired: the per-query spread cancels
    elsewhere = {**other, "per_item": per_item_mean([f"x{i}" for i in range(200)], better, "ndcg@10")}
    with pytest.raises(ValueError, match="different items"):
        paired_change("scifact", base, elsewhere)


def test_results_without_per_item_data_give_the_change_without_an_interval() -> None:
    changes = compare_results({"tasks": {"stsb": {"spearman": 80.0}}}, {"tasks": {"stsb": {"spearman": 81.5}, "sickr": {"spearman": 1.0}}})
    assert len(changes) == 1 and changes[0].delta == pytest.approx(1.5) and not changes[0].has_interval
    text = format_changes(changes, "base", "other")
    assert "n/a (no per-item data)" in text and "+1.50" in text


def test_evaluate_compare_prints_the_change_and_stores_it(tiny_bert_dir, tmp_path, capsys) -> None:
    import json

    from synthembed.cli import main

    sts = tmp_path / "data" / "sts"
    sts.mkdir(parents=True)
    rows = "".join(f"{i % 5}.0\tthe cat sat {i}\tthe cat {'sat' if i % 2 else 'ran'} down {i}\n" for i in range(12))
    (sts / "stsb.test.tsv").write_text("score\tsentence1\tsentence2\n" + rows)
    common = ["--tasks", "stsb", "--data-dir", str(tmp_path / "data"), "--no-progress", "--max-length", "16"]
    base_file = tmp_path / "base.json"
    assert main(["evaluate", str(tiny_bert_dir), *common, "--output", str(base_file)]) == 0
    out = tmp_path / "r.json"
    assert main(["evaluate", str(tiny_bert_dir), *common, "--compare", str(base_file), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "change from" in printed and "[+0.00, +0.00]" in printed and "covers 0" in printed
    stored = json.loads(out.read_text())["compare"]["changes"][0]
    assert stored["delta"] == 0.0 and stored["ci_low"] == stored["ci_high"] == 0.0 and stored["covers_zero"] is True
    # a model reference is evaluated with the same settings; a missing results file is a clean error (exit 2)
    assert main(["evaluate", str(tiny_bert_dir), *common, "--compare", str(tiny_bert_dir)]) == 0
    assert main(["evaluate", str(tiny_bert_dir), *common, "--compare", str(tmp_path / "nope.json")]) == 2
    assert "results file not found" in capsys.readouterr().err
