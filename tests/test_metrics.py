"""Pure numpy metrics against scipy and hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, rankdata as scipy_rankdata, spearmanr

from synthembed.evaluation import metrics as m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 6, size=200).astype(float)  # many ties, like STS gold scores
    predicted = gold + rng.normal(0, 2.0, size=200)
    predicted[:20] = 0.5  # ties in the predictions too
    assert m.spearman(gold, predicted) == pytest.approx(spearmanr(gold, predicted).statistic, abs=1e-12)
    assert m.pearson(gold, predicted) == pytest.approx(pearsonr(gold, predicted).statistic, abs=1e-12)
    np.testing.assert_allclose(m.rankdata(predicted), scipy_rankdata(predicted))


def test_correlation_of_constant_is_nan() -> None:
    assert math.isnan(m.spearman(np.ones(5), np.arange(5)))
    assert math.isnan(m.pearson(np.array([1.0]), np.array([2.0])))


def test_ndcg_hand_worked_example() -> None:
    # Ranked grades 3,2,3,0,1,2 (the textbook example): DCG = 3 + 2/log2(3) + 3/2 + 0 + 1/log2(6) + 2/log2(7)
    ranked = [3, 2, 3, 0, 1, 2]
    dcg = 3 + 2 / math.log2(3) + 3 / 2 + 0 + 1 / math.log2(6) + 2 / math.log2(7)
    assert m.dcg(ranked) == pytest.approx(dcg)
    assert dcg == pytest.approx(6.8611, abs=1e-4)
    # ideal order of the judged grades 3,3,2,2,1: 3 + 3/log2(3) + 2/2 + 2/log2(5) + 1/log2(6) = 7.1410
    ideal = 3 + 3 / math.log2(3) + 1 + 2 / math.log2(5) + 1 / math.log2(6)
    assert m.ndcg_at_k(ranked, [3, 3, 2, 2, 1], k=6) == pytest.approx(dcg / ideal)
    assert dcg / ideal == pytest.approx(0.9608, abs=1e-4)
    # cutoff: only the first 2 retrieved count, ideal also cut at 2
    assert m.ndcg_at_k(ranked, [3, 3, 2, 2, 1], k=2) == pytest.approx((3 + 2 / math.log2(3)) / (3 + 3 / math.log2(3)))
    # a relevant document never retrieved lowers nDCG (ideal counts it)
    assert m.ndcg_at_k([1, 0], [1, 1], k=10) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert m.ndcg_at_k([0, 0], [], k=10) == 0.0


def test_recall_mrr_ap_by_hand() -> None:
    ranked = [0, 1, 0, 1, 0]
    assert m.recall_at_k(ranked, n_relevant=3, k=2) == pytest.approx(1 / 3)
    assert m.recall_at_k(ranked, n_relevant=3, k=5) == pytest.approx(2 / 3)
    assert m.reciprocal_rank_at_k(ranked, k=10) == pytest.approx(1 / 2)
    assert m.reciprocal_rank_at_k(ranked, k=1) == 0.0
    # hits at ranks 2 and 4: precisions 1/2 and 2/4; AP over the 2 present = 0.5, over 3 relevant = 1/3
    assert m.average_precision(ranked) == pytest.approx(0.5)
    assert m.average_precision(ranked, n_relevant=3) == pytest.approx(1 / 3)
    assert m.average_precision([0, 0]) == 0.0


def test_ap_matches_sklearn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    relevant = rng.integers(0, 2, size=30)
    relevant[0] = 1
    scores = rng.normal(size=30)
    ranked = relevant[np.argsort(-scores)]
    assert m.average_precision(ranked) == pytest.approx(sklearn_metrics.average_precision_score(relevant, scores))


@pytest.mark.parametrize("corpus_chunk,query_chunk", [(3, 2), (7, 100), (1000, 1)])
def test_chunked_search_equals_brute_force(corpus_chunk: int, query_chunk: int) -> None:
    rng = np.random.default_rng(0)
    queries = m.normalize_rows(rng.normal(size=(9, 8)))
    corpus = m.normalize_rows(rng.normal(size=(50, 8)))
    scores, indices = m.top_k_search(queries, corpus, 10, corpus_chunk=corpus_chunk, query_chunk=query_chunk)
    full = queries @ corpus.T  # (9, 50)
    expected = np.argsort(-full, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)


def test_search_k_larger_than_corpus_and_ties() -> None:
    queries = np.array([[1.0, 0.0]], dtype=np.float32)
    corpus = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    scores, indices = m.top_k_search(queries, corpus, 100, corpus_chunk=1)
    assert indices.tolist() == [[1, 2, 0]]  # equal scores ordered by index
    assert scores.shape == (1, 3)


def test_pairwise_cosine_and_normalize() -> None:
    a = np.array([[3.0, 4.0], [0.0, 0.0]])
    b = np.array([[6.0, 8.0], [1.0, 0.0]])
    np.testing.assert_allclose(m.pairwise_cosine(a, b), [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(m.normalize_rows(a)[0]), 1.0, rtol=1e-6)
