"""Embed the texts of all requested tasks once: de-duplicated, longest first, unit-normalized.

Encoding dominates evaluation time, so the suite never embeds a sentence twice (STS files repeat
sentences, and tasks share them), and it sends the longest texts first so an out-of-memory error
shows up in the first batch rather than at the end of a long run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from synthembed.evaluation.metrics import normalize_rows

logger = logging.getLogger(__name__)


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


def token_lengths(model: Any, texts: Sequence[str]) -> list[int] | None:
    """Tokens per text as the model will see them (special tokens, truncation), or None without a tokenizer."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not callable(tokenizer) or not texts:
        return None
    max_length = getattr(model, "max_seq_length", None)
    try:
        encoded = tokenizer(
            list(texts), add_special_tokens=True, truncation=max_length is not None, max_length=max_length
        )
    except Exception:  # an unusual tokenizer: fall back to sentence-count batches
        logger.debug("could not pre-tokenize for token-budget batches", exc_info=True)
        return None
    return [max(1, len(ids)) for ids in encoded["input_ids"]]


def token_budget_batches(lengths: Sequence[int], batch_size: int) -> list[slice]:
    """Cut a longest-first list into batches of at most ``batch_size x longest length`` padded tokens.

    The first batch is exactly ``batch_size`` texts (what the user sized memory for); later, shorter
    texts fill the same token budget, so short sentences go in fewer, larger forward passes.
    Attention memory per batch (n x L^2) only shrinks as L falls, so peak memory stays that of batch one.
    """
    if not lengths:
        return []
    budget = batch_size * lengths[0]
    batches, start = [], 0
    while start < len(lengths):
        size = max(1, budget // lengths[start])  # lengths[start] is the longest in this batch
        batches.append(slice(start, min(start + size, len(lengths))))
        start += size
    return batches


def encode_texts(
    model: Any,
    texts: Iterable[str],
    *,
    batch_size: int = 64,
    show_progress: bool = False,
    token_budget: bool = True,
) -> EmbeddingTable:
    """Embed each distinct text once with `model.encode` (a SentenceTransformer or anything alike).

    With `token_budget` (and a model that has a tokenizer), texts are sorted by token count and
    batched by padded tokens (see `token_budget_batches`); otherwise one `encode` call with
    `batch_size` texts a batch.
    """
    unique = unique_longest_first(texts)
    if not unique:
        return EmbeddingTable({}, np.zeros((0, 0), dtype=np.float32))
    lengths = token_lengths(model, unique) if token_budget else None
    if lengths is None:
        embeddings = np.asarray(
            model.encode(unique, batch_size=batch_size, show_progress_bar=show_progress, convert_to_numpy=True),
            dtype=np.float32,
        )  # (n_unique, dim)
    else:
        order = sorted(range(len(unique)), key=lambda i: -lengths[i])  # stable: char-length order within ties
        unique = [unique[i] for i in order]
        lengths = [lengths[i] for i in order]
        parts = []
        batches = token_budget_batches(lengths, batch_size)
        for batch in tqdm(batches, desc="Encoding", unit="batch", disable=not show_progress):
            chunk = unique[batch]
            parts.append(
                np.asarray(
                    model.encode(chunk, batch_size=len(chunk), show_progress_bar=False, convert_to_numpy=True),
                    dtype=np.float32,
                )  # (len(chunk), dim)
            )
        embeddings = np.concatenate(parts, axis=0)  # (n_unique, dim)
    matrix = normalize_rows(embeddings)
    return EmbeddingTable({t: i for i, t in enumerate(unique)}, matrix)
