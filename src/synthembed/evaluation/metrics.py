"""Pure numpy metrics: correlations for STS, ranking metrics for retrieval and reranking.

Conventions: functions return fractions in [0, 1] (or [-1, 1] for correlations); callers multiply
by 100 for reporting. Ranking metrics take the relevance grades of a ranked list, best first, so
they do not care how the ranking was produced.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata 'average')."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.shape[0]
    order = np.argsort(values, kind="mergesort")  # (n,)
    sorted_values = values[order]
    # start of each run of equal values in sorted order
    new_run = np.empty(n, dtype=bool)
    if n:
        new_run[0] = True
        new_run[1:] = sorted_values[1:] != sorted_values[:-1]
    run_id = np.cumsum(new_run) - 1  # (n,) run index of each sorted position
    run_starts = np.flatnonzero(new_run)  # (n_runs,)
    run_ends = np.append(run_starts[1:], n)  # exclusive
    average_rank = (run_starts + 1 + run_ends) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = average_rank[run_id]
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (no defined correlation)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"pearson: shapes differ {x.shape} vs {y.shape}")
    if x.size < 2:
        return float("nan")
    xc = x - x.mean()
    yc = y - y.mean()
    denominator = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    if denominator == 0.0:
        return float("nan")
    return float((xc * yc).sum() / denominator)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks), as scipy.stats.spearmanr."""
    return pearson(rankdata(x), rankdata(y))


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero) in float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)  # (n, 1)
    return matrix / np.maximum(norms, np.float32(1e-12))


def pairwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of `a` with row i of `b`: (n, d), (n, d) -> (n,)."""
    if a.shape != b.shape:
        raise ValueError(f"pairwise_cosine: shapes differ {a.shape} vs {b.shape}")
    return np.einsum("nd,nd->n", normalize_rows(a), normalize_rows(b))


def dcg(gains: Sequence[float] | np.ndarray) -> float:
    """Discounted cumulative gain with linear gain (trec_eval / BEIR): sum gain_i / log2(i + 1), i from 1."""
    gains = np.asarray(gains, dtype=np.float64)
    if gains.size == 0:
        return 0.0
    discounts = np.log2(np.arange(2, gains.size + 2))  # (k,)
    return float((gains / discounts).sum())


def ndcg_at_k(ranked_gains: Sequence[float], relevant_gains: Sequence[float], k: int) -> float:
    """nDCG@k: DCG of the top k of the ranking over DCG of the ideal ranking of all judged relevant items.

    `ranked_gains`: the relevance grade of each retrieved item, best first (0 for unjudged).
    `relevant_gains`: the grades of every relevant item for the query (retrieved or not).
    """
    ideal = dcg(sorted((g for g in relevant_gains if g > 0), reverse=True)[:k])
    if ideal == 0.0:
        return 0.0
    return dcg(np.asarray(ranked_gains, dtype=np.float64)[:k]) / ideal


def recall_at_k(ranked_gains: Sequence[float], n_relevant: int, k: int) -> float:
    """Share of the relevant items that appear in the top k."""
    if n_relevant <= 0:
        return 0.0
    hits = int((np.asarray(ranked_gains, dtype=np.float64)[:k] > 0).sum())
    return hits / n_relevant


def reciprocal_rank_at_k(ranked_gains: Sequence[float], k: int) -> float:
    """1 / rank of the first relevant item within the top k, else 0 (MRR@k per query)."""
    relevant = np.flatnonzero(np.asarray(ranked_gains, dtype=np.float64)[:k] > 0)
    return 1.0 / (relevant[0] + 1) if relevant.size else 0.0


def average_precision(ranked_gains: Sequence[float], n_relevant: int | None = None) -> float:
    """Average precision of a ranking: mean over relevant items of precision at their rank.

    `n_relevant` defaults to the relevant items present in the ranking (the reranking case, where
    every candidate is ranked).
    """
    relevant = np.asarray(ranked_gains, dtype=np.float64) > 0  # (n,)
    total = int(relevant.sum()) if n_relevant is None else n_relevant
    if total <= 0:
        return 0.0
    hit_positions = np.flatnonzero(relevant)  # 0-based ranks of hits
    precisions = np.arange(1, hit_positions.size + 1) / (hit_positions + 1)
    return float(precisions.sum() / total)


def top_k_search(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    *,
    corpus_chunk: int = 16384,
    query_chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact maximum inner-product search in chunks; memory is O(query_chunk * (corpus_chunk + k)).

    Returns (scores, indices), both (n_queries, min(k, n_corpus)), best first; equal scores are
    ordered by corpus index. Pass normalized rows for cosine similarity.
    """
    n_queries, n_corpus = queries.shape[0], corpus.shape[0]
    k = min(k, n_corpus)
    out_scores = np.empty((n_queries, k), dtype=np.float32)
    out_indices = np.empty((n_queries, k), dtype=np.int64)
    for q_start in range(0, n_queries, query_chunk):
        q_block = queries[q_start : q_start + query_chunk]  # (qb, d)
        best_scores = np.full((q_block.shape[0], 0), -np.inf, dtype=np.float32)
        best_indices = np.zeros((q_block.shape[0], 0), dtype=np.int64)
        for c_start in range(0, n_corpus, corpus_chunk):
            c_block = corpus[c_start : c_start + corpus_chunk]  # (cb, d)
            block_scores = (q_block @ c_block.T).astype(np.float32)  # (qb, cb)
            block_indices = np.broadcast_to(
                np.arange(c_start, c_start + c_block.shape[0], dtype=np.int64), block_scores.shape
            )
            merged_scores = np.concatenate([best_scores, block_scores], axis=1)  # (qb, kept + cb)
            merged_indices = np.concatenate([best_indices, block_indices], axis=1)
            keep = min(k, merged_scores.shape[1])
            if keep < merged_scores.shape[1]:
                part = np.argpartition(-merged_scores, keep - 1, axis=1)[:, :keep]  # (qb, keep)
                merged_scores = np.take_along_axis(merged_scores, part, axis=1)
                merged_indices = np.take_along_axis(merged_indices, part, axis=1)
            best_scores, best_indices = merged_scores, merged_indices
        # sort by score descending, then index ascending (lexsort: last key is primary)
        order = np.lexsort((best_indices, -best_scores), axis=1)  # (qb, k)
        out_scores[q_start : q_start + q_block.shape[0]] = np.take_along_axis(best_scores, order, axis=1)
        out_indices[q_start : q_start + q_block.shape[0]] = np.take_along_axis(best_indices, order, axis=1)
    return out_scores, out_indices
