"""Our retrieval task vs. sentence-transformers' InformationRetrievalEvaluator on the same BEIR data.

The reference reads corpus/queries/qrels with the csv module itself and embeds documents as
``title + " " + text`` (our convention, MTEB's too). Prints nDCG@10, MRR@10, Recall@100 of both,
the wall times and the ratio; exits 1 when nDCG@10 differs by more than 0.5 (x100).

    nice -n 5 .venv/bin/python benchmarks/bench_retrieval.py --data-dir ../shared/data --task scifact

``--max-docs N`` runs both sides on a smaller corpus (every document judged in the split's qrels,
then the first other documents in file order up to N in all), written to a temporary folder: the
same comparison at a fraction of the cost, but not the published full-corpus figure.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def subset_folder(folder: Path, split: str, max_docs: int, out: Path) -> Path:
    """Copy of a BEIR TSV folder whose corpus keeps the judged documents plus the first others, N in all."""
    judged = {r["corpus-id"] for r in read_tsv(folder / f"qrels.{split}.tsv")}
    lines = (folder / "corpus.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    kept = [row for row in rows if row.split("\t", 1)[0] in judged]
    for row in rows:
        if len(kept) >= max_docs:
            break
        if row.split("\t", 1)[0] not in judged:
            kept.append(row)
    target = out / "retrieval" / folder.name
    target.mkdir(parents=True)
    (target / "corpus.tsv").write_text(header + "".join(kept), encoding="utf-8")
    for name in (f"queries.{split}.tsv", f"qrels.{split}.tsv"):
        (target / name).write_text((folder / name).read_text(encoding="utf-8"), encoding="utf-8")
    return out


def reference_metrics(model, folder: Path, split: str, batch_size: int) -> dict[str, float]:
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    corpus = {r["doc_id"]: (f"{r['title']} {r['text']}".strip() if r["title"].strip() else r["text"].strip())
              for r in read_tsv(folder / "corpus.tsv")}
    queries = {r["query_id"]: r["text"] for r in read_tsv(folder / f"queries.{split}.tsv")}
    relevant: dict[str, set[str]] = {}
    for r in read_tsv(folder / f"qrels.{split}.tsv"):
        if float(r["score"]) > 0:
            relevant.setdefault(r["query-id"], set()).add(r["corpus-id"])
    evaluator = InformationRetrievalEvaluator(
        queries, corpus, relevant, batch_size=batch_size, name="ref", write_csv=False,
        mrr_at_k=[10], ndcg_at_k=[10], precision_recall_at_k=[10, 100], map_at_k=[100],
    )
    metrics = evaluator(model)
    return {
        "ndcg@10": 100 * metrics["ref_cosine_ndcg@10"],
        "mrr@10": 100 * metrics["ref_cosine_mrr@10"],
        "recall@100": 100 * metrics["ref_cosine_recall@100"],
        "map@100": 100 * metrics["ref_cosine_map@100"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--task", default="scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-docs", type=int, default=None, help="smaller corpus for a quicker comparison")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from synthembed.evaluation.suite import evaluate_model
    from synthembed.models.encoder import load_encoder

    import tempfile

    if args.max_docs is not None:
        scratch = tempfile.mkdtemp(prefix="bench-retrieval-")
        args.data_dir = subset_folder(args.data_dir / "retrieval" / args.task, args.split, args.max_docs, Path(scratch))
    model = load_encoder(args.model)
    model.encode(["warm up"] * 8)
    started = time.perf_counter()
    ours = evaluate_model(model, args.task, split=args.split, data_dir=args.data_dir,
                          batch_size=args.batch_size, show_progress=False)["tasks"][args.task]
    ours_time = time.perf_counter() - started
    started = time.perf_counter()
    reference = reference_metrics(model, args.data_dir / "retrieval" / args.task, args.split, args.batch_size)
    reference_time = time.perf_counter() - started

    print(f"{args.task} {args.split}: {ours['n']} queries, {ours['corpus_size']} documents, model {args.model}")
    print(f"{'metric':11} {'ours':>8} {'reference':>10}")
    for key in ("ndcg@10", "mrr@10", "recall@100", "map@100"):
        print(f"{key:11} {ours[key]:8.3f} {reference[key]:10.3f}")
    print(f"wall time: ours {ours_time:.1f}s, reference {reference_time:.1f}s, "
          f"ratio {reference_time / ours_time:.2f}x")
    gap = abs(ours["ndcg@10"] - reference["ndcg@10"])
    print(f"nDCG@10 difference {gap:.3f} ({'within' if gap <= 0.5 else 'OUTSIDE'} 0.5)")
    return 0 if gap <= 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
