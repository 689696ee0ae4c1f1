"""Cosine similarities of synthesized records under a model: what the report's histograms show."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import kendalltau


def _cosines(model, left: list[str], right: list[str]) -> np.ndarray:
    texts = sorted(set(left) | set(right), key=len, reverse=True)
    vectors = model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    index = {text: i for i, text in enumerate(texts)}
    vectors = np.asarray(vectors, dtype=np.float64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # (texts, dim) unit rows
    a = vectors[[index[t] for t in left]]  # (n, dim)
    b = vectors[[index[t] for t in right]]  # (n, dim)
    return (a * b).sum(axis=1)  # (n,)


def triplet_similarities(model, records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """cos(anchor, positive) and cos(anchor, negative) for SynCSE-style records."""
    rows = [r for r in records if r.get("anchor") and r.get("positive") and r.get("negative")]
    if not rows:
        return {}
    negatives = [r["negative"] if isinstance(r["negative"], str) else r["negative"][0] for r in rows]
    anchors = [r["anchor"] for r in rows]
    return {
        "positive": _cosines(model, anchors, [r["positive"] for r in rows]).tolist(),
        "hard negative": _cosines(model, anchors, negatives).tolist(),
    }


def graded_pairs(model, records: list[dict[str, Any]]) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """For every graded negative: cos(query, its row's positive) and cos(query, negative), aligned;
    plus the groups (positive, level 1, level 2, ...) that the report's strip plot shows."""
    rows = [r for r in records if r.get("query") and r.get("positive") and r.get("negatives")]
    if not rows:
        return [], [], {}
    positives = _cosines(model, [r["query"] for r in rows], [r["positive"] for r in rows])  # (rows,)
    pairs = [(i, n) for i, r in enumerate(rows) for n in r["negatives"] if isinstance(n, dict) and n.get("text")]
    negatives = _cosines(model, [rows[i]["query"] for i, _ in pairs], [n["text"] for _, n in pairs])  # (pairs,)
    groups: dict[str, list[float]] = {"positive": positives.tolist()}
    for (_, negative), value in sorted(zip(pairs, negatives.tolist()), key=lambda item: str(item[0][1].get("level"))):
        groups.setdefault(f"level {negative.get('level', '?')}", []).append(value)
    return [float(positives[i]) for i, _ in pairs], negatives.tolist(), groups


def chain_similarities(model, records: list[dict[str, Any]]) -> list[list[float]]:
    """Per chain of 3+ sentences: cos(s0, sk) for k = 1..K (what should fall with k)."""
    chains = []
    for record in records:
        sentences = record.get("sentences") or []
        if len(sentences) >= 3:
            chains.append(_cosines(model, [sentences[0]] * (len(sentences) - 1), sentences[1:]).tolist())
    return chains


def kendall_with_position(similarities: list[float]) -> float:
    """Kendall tau of a chain's similarities against -position: +1 when they fall strictly with k."""
    return float(kendalltau(similarities, -np.arange(1, len(similarities) + 1)).statistic)
