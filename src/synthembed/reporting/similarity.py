"""Cosine similarities of synthesized records under a model: what the report's histograms show."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import kendalltau


def _cosines(model, left: list[str], right: list[str]) -> np.ndarray:
    texts = sorted(set(left) | set(right), key=len, reverse=True)
    vectors = model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    index = {text: i for i, text in enumerate(texts)}
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


def graded_similarities(model, records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """cos(query, positive) and cos(query, negative of each level) for graded (MGH) records."""
    rows = [r for r in records if r.get("query") and r.get("positive") and r.get("negatives")]
    if not rows:
        return {}
    groups: dict[str, list[float]] = {
        "positive": _cosines(model, [r["query"] for r in rows], [r["positive"] for r in rows]).tolist()
    }
    levels = sorted({n["level"] for r in rows for n in r["negatives"] if isinstance(n, dict) and "level" in n})
    for level in levels:
        pairs = [(r["query"], n["text"]) for r in rows for n in r["negatives"] if n.get("level") == level]
        groups[f"level {level}"] = _cosines(model, [q for q, _ in pairs], [t for _, t in pairs]).tolist()
    return groups


def chain_agreement(model, records: list[dict[str, Any]]) -> tuple[list[float], list[tuple[float, float]]]:
    """Per chain, Kendall tau of (similarity to s0) against (- position); and mean similarity by position."""
    taus: list[float] = []
    by_position: dict[int, list[float]] = {}
    for record in records:
        sentences = record.get("sentences") or []
        if len(sentences) < 3:
            continue
        similarities = _cosines(model, [sentences[0]] * (len(sentences) - 1), sentences[1:])  # (K,)
        tau = kendalltau(similarities, -np.arange(1, len(sentences))).statistic
        if not np.isnan(tau):
            taus.append(float(tau))
        for position, value in enumerate(similarities, start=1):
            by_position.setdefault(position, []).append(float(value))
    means = [(float(p), float(np.mean(v))) for p, v in sorted(by_position.items())]
    return taus, means
