"""A deterministic, model-free encoder for tests and smoke runs (mteb's hash-seeded random encoder).

``mode="text"``: each distinct text gets its own random unit vector (seeded by a hash of the text),
so nothing is similar to anything. ``mode="words"``: the sum of per-word random vectors, so texts
that share words are similar: enough signal for retrieval/STS tests to have known answers.
It records every `encode` call so tests can check that the suite encodes each text once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_WORD = re.compile(r"\w+")


class HashEncoder:
    """`encode(texts) -> (n, dim)` float32, identical across runs and machines."""

    def __init__(self, dim: int = 64, mode: str = "words") -> None:
        if mode not in ("words", "text"):
            raise ValueError("mode must be 'words' or 'text'")
        self.dim = dim
        self.mode = mode
        self.calls: list[list[str]] = []
        self.max_seq_length = None

    def _vector(self, key: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)  # (dim,)

    def embed(self, text: str) -> np.ndarray:
        if self.mode == "text":
            return self._vector(text)
        words = _WORD.findall(text.lower())
        if not words:
            return self._vector("\x00" + text)
        return np.sum([self._vector(w) for w in words], axis=0)  # (dim,)

    def encode(self, texts: Sequence[str] | str, **_: Any) -> np.ndarray:
        """Embed `texts` (extra sentence-transformers keyword arguments are accepted and ignored)."""
        if isinstance(texts, str):
            texts = [texts]
        self.calls.append(list(texts))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.embed(t) for t in texts])  # (n, dim)
