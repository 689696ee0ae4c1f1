"""Embed the texts of all requested tasks once: de-duplicated, longest first, unit-normalized.

Encoding dominates evaluation time, so the suite never embeds a sentence twice (STS files repeat
sentences, and tasks share them), and it sends the longest texts first so an out-of-memory error
shows up in the first batch rather than at the end of a long run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthembed.evaluation.metrics import normalize_rows


@dataclass(frozen=True)
class EmbeddingTable:
    """Unit-normalized embeddings of unique texts; `lookup` maps texts to their rows."""

    index: dict[str, int]
    matrix: np.ndarray  # (n_unique, dim) float32, rows of unit length

    def lookup(self, texts: Sequence[str]) -> np.ndarray:
        """Rows for `texts` in order: (len(texts), dim)."""
        try:
            rows = [self.index[t] for t in texts]
        except KeyError as exc:
            raise KeyError(f"text was not embedded by the suite: {exc.args[0]!r:.80}") from None
        return self.matrix[np.asarray(rows, dtype=np.int64)]

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


def unique_longest_first(texts: Iterable[str]) -> list[str]:
    """Distinct texts, longest first (ties in first-seen order), so batches hold similar lengths."""
    seen = dict.fromkeys(texts)
    return sorted(seen, key=len, reverse=True)  # sorted() is stable


def encode_texts(
    model: Any,
    texts: Iterable[str],
    *,
    batch_size: int = 64,
    show_progress: bool = False,
) -> EmbeddingTable:
    """Embed each distinct text once with `model.encode` (a SentenceTransformer or anything alike)."""
    unique = unique_longest_first(texts)
    if not unique:
        return EmbeddingTable({}, np.zeros((0, 0), dtype=np.float32))
    embeddings = model.encode(
        unique,
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
    )  # (n_unique, dim)
    matrix = normalize_rows(np.asarray(embeddings, dtype=np.float32))
    return EmbeddingTable({t: i for i, t in enumerate(unique)}, matrix)
