"""Reranking: for each query, order its candidates (positives + negatives) by cosine; MAP and MRR@10.

Input: a JSONL file of ``{"query": str, "positives": [str, ...], "negatives": [str, ...]}``, named
``rerank:PATH.jsonl`` or ``rerank:NAME`` (= ``DATA_DIR/reranking/NAME.<split>.jsonl``). Records with
no positive or no negative cannot be scored; they are skipped and counted (``skipped_records``),
as sentence-transformers' RerankingEvaluator does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthembed.errors import DataError
from synthembed.evaluation.base import TaskUnavailable
from synthembed.evaluation.compare import per_item_mean
from synthembed.evaluation.encoding import EmbeddingTable
from synthembed.evaluation.metrics import average_precision, ndcg_at_k, reciprocal_rank_at_k
from synthembed.io.tables import read_jsonl

RERANK_PREFIX = "rerank:"


@dataclass(frozen=True)
class RerankingSample:
    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]


@dataclass
class RerankingTask:
    """Queries with candidate lists to rank; relevance is binary (positive or not)."""

    name: str
    split: str
    samples: list[RerankingSample]
    source: str
    skipped_records: int = 0
    main_metric: str = field(default="map", init=False)

    def texts(self) -> Iterator[str]:
        for sample in self.samples:
            yield sample.query
            yield from sample.positives
            yield from sample.negatives

    def score(self, table: EmbeddingTable) -> dict[str, Any]:
        """MAP over the full candidate list, MRR@10 and nDCG@10, x100, averaged over samples."""
        maps, mrrs, ndcgs = [], [], []
        for sample in self.samples:
            candidates = [*sample.positives, *sample.negatives]
            relevance = np.array([1.0] * len(sample.positives) + [0.0] * len(sample.negatives))  # (c,)
            query = table.lookup([sample.query])[0]  # (dim,)
            similarity = table.lookup(candidates) @ query  # (c,)
            order = np.argsort(-similarity, kind="stable")  # ties keep input order
            ranked = relevance[order]
            maps.append(average_precision(ranked))
            mrrs.append(reciprocal_rank_at_k(ranked, 10))
            ndcgs.append(ndcg_at_k(ranked, relevance, 10))
        result: dict[str, Any] = {
            "map": 100.0 * float(np.mean(maps)),
            "mrr@10": 100.0 * float(np.mean(mrrs)),
            "ndcg@10": 100.0 * float(np.mean(ndcgs)),
            "split": self.split,
            "n": len(self.samples),
        }
        ids = [f"{s.query}\t{len(s.positives)}\t{len(s.negatives)}" for s in self.samples]
        result["per_item"] = per_item_mean(ids, maps, "map")  # for the paired bootstrap
        if self.skipped_records:
            result["skipped_records"] = self.skipped_records
        return result


def reranking_file(name_or_path: str, split: str, data_dir: Path | None) -> Path:
    """Resolve ``rerank:`` arguments to a JSONL path (TaskUnavailable when nothing is there)."""
    explicit = Path(name_or_path).expanduser()
    if explicit.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        if not explicit.is_file():
            raise TaskUnavailable(f"rerank:{name_or_path}: file not found ({explicit})")
        return explicit
    if data_dir is None:
        raise TaskUnavailable(
            f"rerank:{name_or_path}: give a .jsonl path or --data-dir/$SYNTHEMBED_DATA "
            "(hub reranking sets run through mteb:TASK)"
        )
    path = Path(data_dir) / "reranking" / f"{name_or_path}.{split}.jsonl"
    if not path.is_file():
        raise TaskUnavailable(f"rerank:{name_or_path} {split}: file not found ({path})")
    return path


def load_reranking_task(name_or_path: str, split: str = "test", data_dir: Path | None = None) -> RerankingTask:
    path = reranking_file(name_or_path, split, data_dir)
    return read_reranking_file(path, name=f"{RERANK_PREFIX}{name_or_path}", split=split)


def read_reranking_file(path: Path, *, name: str, split: str) -> RerankingTask:
    """Validate and load the JSONL (errors name file and line)."""
    samples: list[RerankingSample] = []
    skipped = 0
    for line, record in read_jsonl(path):
        query = record.get("query")
        if not isinstance(query, str) or not query.strip():
            raise DataError(path, "'query' must be a non-empty string", line)
        lists = []
        for key in ("positives", "negatives"):
            value = record.get(key)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DataError(path, f"'{key}' must be a list of strings", line)
            lists.append(tuple(value))
        if not lists[0] or not lists[1]:
            skipped += 1
            continue
        samples.append(RerankingSample(query, lists[0], lists[1]))
    if not samples:
        raise DataError(path, "no record has both positives and negatives")
    return RerankingTask(name=name, split=split, samples=samples, source=str(path), skipped_records=skipped)
