"""Retrieval on BEIR-format data: embed queries and corpus, exact top-k search in chunks, nDCG@10 etc.

Folder layout (../shared/data/retrieval/<name>/, BEIR as TSV): ``corpus.tsv`` (doc_id, title, text),
``queries.<split>.tsv`` (query_id, text), ``qrels.<split>.tsv`` (query-id, corpus-id, score).
Documents are embedded as ``title + " " + text`` (MTEB's convention). Following BEIR/pytrec_eval,
only queries with at least one relevant (score > 0) document are scored, and the ideal DCG counts
every judged relevant document, even one missing from the corpus (such qrels are counted).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthembed.errors import DataError
from synthembed.evaluation.base import TaskUnavailable
from synthembed.evaluation.compare import per_item_mean
from synthembed.evaluation.encoding import EmbeddingTable
from synthembed.evaluation.metrics import (
    average_precision,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
    top_k_search,
)
from synthembed.io.tables import read_delimited

logger = logging.getLogger(__name__)

RETRIEVAL_PREFIX = "retrieval:"
# BEIR datasets the hub loader knows by name (mteb/<name> holds corpus, queries and qrels).
BEIR_NAMES = ("scifact", "nfcorpus", "arguana", "scidocs", "fiqa", "trec-covid", "quora", "nq", "hotpotqa")
TOP_K = 100  # the deepest cutoff among the metrics


@dataclass
class RetrievalTask:
    """Queries, a corpus and graded relevance judgements (qrels)."""

    name: str
    split: str
    queries: dict[str, str]  # query id -> text (only queries with a relevant document)
    corpus: dict[str, str]  # doc id -> text to embed
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: grade > 0}
    source: str
    notes: dict[str, int] = field(default_factory=dict)  # counts of qrels that could not be used
    corpus_chunk: int = 16384
    query_chunk: int = 1024
    main_metric: str = field(default="ndcg@10", init=False)

    def texts(self) -> Iterator[str]:
        yield from self.queries.values()
        yield from self.corpus.values()

    def score(self, table: EmbeddingTable) -> dict[str, Any]:
        """nDCG@10, MRR@10, Recall@10/100, MAP@100 (x100), averaged over the scored queries."""
        query_ids = list(self.queries)
        doc_ids = list(self.corpus)
        query_matrix = table.lookup([self.queries[q] for q in query_ids])  # (n_q, dim)
        corpus_matrix = table.lookup([self.corpus[d] for d in doc_ids])  # (n_docs, dim)
        _, top = top_k_search(
            query_matrix, corpus_matrix, TOP_K, corpus_chunk=self.corpus_chunk, query_chunk=self.query_chunk
        )  # (n_q, k)
        per_query: dict[str, list[float]] = {
            "ndcg@10": [], "mrr@10": [], "recall@10": [], "recall@100": [], "map@100": []
        }
        for row, query_id in enumerate(query_ids):
            judged = self.qrels[query_id]
            gains = [float(judged.get(doc_ids[i], 0)) for i in top[row]]  # (k,) grade of each hit
            n_relevant = len(judged)
            per_query["ndcg@10"].append(ndcg_at_k(gains, list(judged.values()), 10))
            per_query["mrr@10"].append(reciprocal_rank_at_k(gains, 10))
            per_query["recall@10"].append(recall_at_k(gains, n_relevant, 10))
            per_query["recall@100"].append(recall_at_k(gains, n_relevant, 100))
            per_query["map@100"].append(average_precision(gains[:100], n_relevant))
        result: dict[str, Any] = {k: 100.0 * float(np.mean(v)) if v else float("nan") for k, v in per_query.items()}
        result.update({"split": self.split, "n": len(query_ids), "corpus_size": len(doc_ids)})
        result["per_item"] = per_item_mean(query_ids, per_query["ndcg@10"], "ndcg@10")  # for the paired bootstrap
        if self.notes:
            result["notes"] = dict(self.notes)
        return result


def is_retrieval_name(name: str, data_dir: Path | None) -> bool:
    """True for a known BEIR name or a folder under ``DATA_DIR/retrieval/``."""
    return name in BEIR_NAMES or (data_dir is not None and (Path(data_dir) / "retrieval" / name).is_dir())


def load_retrieval_task(name_or_path: str, split: str = "test", data_dir: Path | None = None) -> RetrievalTask:
    """Load a BEIR task: an explicit folder, ``DATA_DIR/retrieval/<name>``, or (no data_dir) the hub."""
    explicit = Path(name_or_path).expanduser()
    if explicit.is_dir() and (explicit / "corpus.tsv").is_file():
        return read_beir_folder(explicit, name=explicit.name, split=split)
    if data_dir is not None:
        folder = Path(data_dir) / "retrieval" / name_or_path
        if not (folder / "corpus.tsv").is_file():
            raise TaskUnavailable(f"{name_or_path}: BEIR folder not found ({folder}/corpus.tsv)")
        return read_beir_folder(folder, name=name_or_path, split=split)
    if name_or_path in BEIR_NAMES:
        return _load_from_hub(name_or_path, split)
    raise TaskUnavailable(f"{name_or_path}: not a BEIR folder, and no --data-dir/$SYNTHEMBED_DATA given")


def read_beir_folder(folder: Path, *, name: str, split: str) -> RetrievalTask:
    """Read corpus/queries/qrels TSVs; errors name the file and line."""
    queries_path = folder / f"queries.{split}.tsv"
    qrels_path = folder / f"qrels.{split}.tsv"
    for path in (queries_path, qrels_path):
        if not path.is_file():
            raise TaskUnavailable(f"{name} {split}: file not found ({path})")
    corpus: dict[str, str] = {}
    corpus_path = folder / "corpus.tsv"
    for line, row in read_delimited(corpus_path, ("doc_id", "title", "text")):
        doc_id = row["doc_id"].strip()
        if not doc_id:
            raise DataError(corpus_path, "empty doc_id", line)
        if doc_id in corpus:
            raise DataError(corpus_path, f"duplicate doc_id {doc_id!r}", line)
        corpus[doc_id] = _document_text(row["title"], row["text"])
    queries: dict[str, str] = {}
    for line, row in read_delimited(queries_path, ("query_id", "text")):
        query_id = row["query_id"].strip()
        if query_id in queries:
            raise DataError(queries_path, f"duplicate query_id {query_id!r}", line)
        queries[query_id] = row["text"]
    raw_qrels: list[tuple[str, str, int]] = []
    for line, row in read_delimited(qrels_path, ("query-id", "corpus-id", "score")):
        raw_qrels.append((row["query-id"].strip(), row["corpus-id"].strip(), _parse_grade(row["score"], qrels_path, line)))
    return build_task(name, split, queries, corpus, raw_qrels, source=str(folder))


def build_task(
    name: str,
    split: str,
    queries: dict[str, str],
    corpus: dict[str, str],
    raw_qrels: list[tuple[str, str, int]],
    *,
    source: str,
) -> RetrievalTask:
    """Keep relevant (grade > 0) judgements of known queries; count what had to be left out."""
    qrels: dict[str, dict[str, int]] = {}
    notes = {"qrels_unknown_query": 0, "qrels_doc_not_in_corpus": 0, "queries_without_relevant": 0}
    for query_id, doc_id, grade in raw_qrels:
        if grade <= 0:
            continue
        if query_id not in queries:
            notes["qrels_unknown_query"] += 1
            continue
        if doc_id not in corpus:
            notes["qrels_doc_not_in_corpus"] += 1
        qrels.setdefault(query_id, {})[doc_id] = grade
    notes["queries_without_relevant"] = sum(1 for q in queries if q not in qrels)
    if not qrels:
        raise TaskUnavailable(f"{name} {split}: no query has a relevant document in the qrels")
    kept_queries = {q: text for q, text in queries.items() if q in qrels}
    for key, count in notes.items():
        if count:
            logger.warning("%s %s: %d %s", name, split, count, key.replace("_", " "))
    return RetrievalTask(
        name=name,
        split=split,
        queries=kept_queries,
        corpus=corpus,
        qrels=qrels,
        source=source,
        notes={k: v for k, v in notes.items() if v},
    )


def _document_text(title: str, text: str) -> str:
    return f"{title} {text}".strip() if title.strip() else text.strip()


def _parse_grade(text: str, path: Path, line: int) -> int:
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"relevance score {text!r} is not a number", line) from None
    if not np.isfinite(value) or value != int(value):
        raise DataError(path, f"relevance score {text!r} is not a whole number", line)
    return int(value)


def _load_from_hub(name: str, split: str) -> RetrievalTask:
    """mteb/<name> on the hub: configs `corpus`, `queries` and `default` (qrels by split)."""
    dataset_id = f"mteb/{name}"
    try:
        from datasets import load_dataset

        corpus_ds = load_dataset(dataset_id, "corpus", split="corpus")
        queries_ds = load_dataset(dataset_id, "queries", split="queries")
        qrels_ds = load_dataset(dataset_id, "default", split=split)
    except Exception as exc:  # network, missing repo or split, offline mode
        raise TaskUnavailable(
            f"{name} {split}: no --data-dir/$SYNTHEMBED_DATA given and the hub dataset {dataset_id!r} "
            f"could not be loaded ({type(exc).__name__}: {exc})"
        ) from exc
    corpus = {str(r["_id"]): _document_text(r.get("title") or "", r["text"]) for r in corpus_ds}
    queries = {str(r["_id"]): r["text"] for r in queries_ds}
    raw_qrels = [(str(r["query-id"]), str(r["corpus-id"]), int(r["score"])) for r in qrels_ds]
    return build_task(name, split, queries, corpus, raw_qrels, source=f"hf://{dataset_id}")
