"""BEIR-format retrieval and JSONL reranking with the hash encoder (known answers, bad input)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from synthembed.errors import DataError
from synthembed.evaluation.base import TaskUnavailable
from synthembed.evaluation.encoding import encode_texts
from synthembed.evaluation.hash_encoder import HashEncoder
from synthembed.evaluation.reranking import load_reranking_task
from synthembed.evaluation.retrieval import load_retrieval_task
from synthembed.evaluation.suite import evaluate_model


def beir_folder(root: Path, *, qrels: str | None = None) -> Path:
    folder = root / "retrieval" / "toy"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.tsv").write_text(
        "doc_id\ttitle\ttext\n"
        "d1\tCats\tcats purr and sleep all day\n"
        "d2\tDogs\tdogs bark at the mail carrier\n"
        "d3\t\trivers flow into the sea\n"
        "d4\tBirds\tbirds migrate south in winter\n",
        encoding="utf-8",
    )
    (folder / "queries.test.tsv").write_text(
        "query_id\ttext\nq1\twhy do cats purr\nq2\twhere do rivers flow\nq3\tunjudged query\n", encoding="utf-8"
    )
    (folder / "qrels.test.tsv").write_text(
        qrels or "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t2\nq2\td9\t1\nq2\td2\t0\n", encoding="utf-8"
    )
    return folder


def test_retrieval_metrics_match_a_brute_force_ranking(tmp_path: Path) -> None:
    beir_folder(tmp_path)
    task = load_retrieval_task("toy", "test", tmp_path)
    assert set(task.queries) == {"q1", "q2"}  # q3 has no relevant document
    assert task.corpus["d1"] == "Cats cats purr and sleep all day" and task.corpus["d3"] == "rivers flow into the sea"
    assert task.notes == {"qrels_doc_not_in_corpus": 1, "queries_without_relevant": 1}

    encoder = HashEncoder(dim=256)
    result = task.score(encode_texts(encoder, task.texts()))

    # brute force: rank all docs per query by cosine of the raw encoder vectors
    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    doc_ids = list(task.corpus)
    docs = np.stack([unit(encoder.embed(task.corpus[d])) for d in doc_ids])
    ndcgs, mrrs = [], []
    for query_id, grades in task.qrels.items():
        order = np.argsort(-(docs @ unit(encoder.embed(task.queries[query_id]))), kind="stable")
        ranked = [grades.get(doc_ids[i], 0) for i in order]
        ideal = sorted(grades.values(), reverse=True)
        dcg = sum(g / math.log2(r + 2) for r, g in enumerate(ranked[:10]))
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal[:10]))
        ndcgs.append(dcg / idcg)
        first = next(r for r, g in enumerate(ranked) if g > 0)
        mrrs.append(1 / (first + 1))
    assert result["ndcg@10"] == pytest.approx(100 * np.mean(ndcgs), abs=1e-4)
    assert result["mrr@10"] == pytest.approx(100 * np.mean(mrrs), abs=1e-4)
    # word overlap puts each relevant doc first; q2's second relevant doc is not in the corpus
    assert result["mrr@10"] == pytest.approx(100.0)
    assert result["recall@100"] == pytest.approx(100 * (1 + 0.5) / 2)
    assert result["n"] == 2 and result["corpus_size"] == 4


def test_retrieval_bad_inputs(tmp_path: Path) -> None:
    folder = beir_folder(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\tyes\n")
    with pytest.raises(DataError, match="not a number") as info:
        load_retrieval_task("toy", "test", tmp_path)
    assert str(info.value).startswith(f"{folder / 'qrels.test.tsv'}:2:")
    (folder / "qrels.test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (folder / "corpus.tsv").write_text("doc_id\ttitle\ttext\nd1\tt\tx\nd1\tt\ty\n")
    with pytest.raises(DataError, match="duplicate doc_id") as info:
        load_retrieval_task("toy", "test", tmp_path)
    assert ":3:" in str(info.value)
    (folder / "corpus.tsv").write_text("id\ttitle\ttext\nd1\tt\tx\n")
    with pytest.raises(DataError, match="missing column"):
        load_retrieval_task("toy", "test", tmp_path)


def test_retrieval_missing_split_or_folder_is_unavailable(tmp_path: Path) -> None:
    beir_folder(tmp_path)
    with pytest.raises(TaskUnavailable, match="queries.dev.tsv"):
        load_retrieval_task("toy", "dev", tmp_path)
    results = evaluate_model(HashEncoder(), "scifact", data_dir=tmp_path, show_progress=False)
    assert results["tasks"] == {} and "corpus.tsv" in results["skipped"]["scifact"]


def test_retrieval_by_explicit_path(tmp_path: Path) -> None:
    folder = beir_folder(tmp_path)
    results = evaluate_model(HashEncoder(), f"retrieval:{folder}", show_progress=False)
    assert results["tasks"][f"retrieval:{folder}"]["mrr@10"] == pytest.approx(100.0)


def rerank_file(path: Path, records: list[dict] | str) -> Path:
    text = records if isinstance(records, str) else "".join(json.dumps(r) + "\n" for r in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_reranking_map_and_mrr(tmp_path: Path) -> None:
    path = rerank_file(
        tmp_path / "reranking" / "toy.test.jsonl",
        [
            {"query": "red apple pie", "positives": ["apple pie recipe red"], "negatives": ["blue car", "green tree"]},
            {"query": "solar power", "positives": ["solar power plants", "power from solar"], "negatives": ["fish"]},
            {"query": "no negatives here", "positives": ["x"], "negatives": []},
        ],
    )
    task = load_reranking_task("toy", "test", tmp_path)
    assert task.skipped_records == 1 and len(task.samples) == 2
    result = task.score(encode_texts(HashEncoder(dim=256), task.texts()))
    assert result["map"] == pytest.approx(100.0) and result["mrr@10"] == pytest.approx(100.0)
    assert result["skipped_records"] == 1
    by_path = evaluate_model(HashEncoder(dim=256), f"rerank:{path}", show_progress=False)
    assert by_path["tasks"][f"rerank:{path}"]["map"] == pytest.approx(100.0)


def test_reranking_hand_computed_map_with_text_mode(tmp_path: Path) -> None:
    # 'text' mode vectors are random, so compute the expected ranking from the encoder directly
    records = [{"query": "q", "positives": ["p1", "p2"], "negatives": ["n1", "n2", "n3"]}]
    rerank_file(tmp_path / "r.jsonl", records)
    task = load_reranking_task(str(tmp_path / "r.jsonl"))
    encoder = HashEncoder(dim=16, mode="text")
    result = task.score(encode_texts(encoder, task.texts()))
    q = encoder.embed("q") / np.linalg.norm(encoder.embed("q"))
    candidates = ["p1", "p2", "n1", "n2", "n3"]
    sims = [float(q @ (encoder.embed(c) / np.linalg.norm(encoder.embed(c)))) for c in candidates]
    ranked = [candidates[i].startswith("p") for i in np.argsort(-np.array(sims), kind="stable")]
    hits = [r for r, rel in enumerate(ranked) if rel]
    expected_ap = np.mean([(i + 1) / (r + 1) for i, r in enumerate(hits)])
    assert result["map"] == pytest.approx(100 * expected_ap, abs=1e-4)
    assert result["mrr@10"] == pytest.approx(100 / (hits[0] + 1), abs=1e-4)


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ('{"query": "q", "positives": ["a"], "negatives": ["b"]}\n{"query": 3, "positives": [], "negatives": []}\n', 2, "'query'"),
        ('{"query": "q", "positives": "a", "negatives": ["b"]}\n', 1, "'positives' must be a list"),
        ('{"query": "q", "positives": ["a"], "negatives": ["b"]}\n{not json\n', 2, "invalid JSON"),
    ],
)
def test_reranking_bad_records_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = rerank_file(tmp_path / "bad.jsonl", text)
    with pytest.raises(DataError, match=fragment) as info:
        load_reranking_task(str(path))
    assert str(info.value).startswith(f"{path}:{line}:")


def test_reranking_missing_file_is_skipped(tmp_path: Path) -> None:
    results = evaluate_model(HashEncoder(), "rerank:absent", data_dir=tmp_path, show_progress=False)
    assert "absent.test.jsonl" in results["skipped"]["rerank:absent"]
