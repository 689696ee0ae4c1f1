"""Our STS suite vs. a loop of sentence-transformers' EmbeddingSimilarityEvaluator, one process.

Both sides score the same model on the same files; the reference reads the TSVs with the csv module
on its own (so a loader bug on our side would show as a score difference). Scores must agree within
0.01 (Spearman x100); the script prints both, the wall times and the ratio, and exits 1 on a mismatch.
Tasks whose files are absent are skipped by both sides and listed.

    nice -n 5 .venv/bin/python benchmarks/bench_evaluate.py --data-dir ../shared/data [--split dev]
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


def reference_scores(model, files: dict[str, Path], batch_size: int) -> dict[str, float]:
    """One EmbeddingSimilarityEvaluator per task, as a sentence-transformers user would write it."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    out = {}
    for name, path in files.items():
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
        evaluator = EmbeddingSimilarityEvaluator(
            [r["sentence1"] for r in rows],
            [r["sentence2"] for r in rows],
            [float(r["score"]) for r in rows],
            batch_size=batch_size,
            main_similarity="cosine",
            name=name,
            write_csv=False,
        )
        out[name] = 100.0 * evaluator(model)[f"{name}_spearman_cosine"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--split", choices=("test", "dev"), default="test")
    parser.add_argument("--batch-size", type=int, default=64, help="ours")
    parser.add_argument(
        "--reference-batch-size",
        type=int,
        default=None,
        help="EmbeddingSimilarityEvaluator's batch size (default: the same as ours; its own default is 16)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two sides this many times; min time kept")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from synthembed.evaluation.sts import STS_TASKS, TaskUnavailable, sts_file
    from synthembed.evaluation.suite import evaluate_model
    from synthembed.models.encoder import load_encoder

    files: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for name in STS_TASKS:
        try:
            path = sts_file(name, args.split, args.data_dir)
        except TaskUnavailable as exc:
            skipped[name] = str(exc)
            continue
        if path is None:
            skipped[name] = "file absent"
        else:
            files[name] = path
    if not files:
        print(f"no STS files for split {args.split} under {args.data_dir}")
        return 1
    reference_batch = args.reference_batch_size or args.batch_size
    model = load_encoder(args.model)
    model.encode(["warm up the model and its kernels"] * 8)

    ours_times, reference_times = [], []
    ours: dict[str, float] = {}
    reference: dict[str, float] = {}
    for _ in range(args.repeats):
        started = time.perf_counter()
        results = evaluate_model(
            model, list(files), split=args.split, data_dir=args.data_dir, batch_size=args.batch_size, show_progress=False
        )
        ours_times.append(time.perf_counter() - started)
        ours = {name: entry["spearman"] for name, entry in results["tasks"].items()}
        started = time.perf_counter()
        reference = reference_scores(model, files, reference_batch)
        reference_times.append(time.perf_counter() - started)

    print(f"model {args.model}, split {args.split}, ours batch {args.batch_size}, reference batch {reference_batch}, "
          f"torch threads {__import__('torch').get_num_threads()}")
    print(f"{'task':8} {'ours':>9} {'reference':>10} {'|diff|':>8}")
    worst = 0.0
    for name in files:
        diff = abs(ours[name] - reference[name])
        worst = max(worst, diff)
        print(f"{name:8} {ours[name]:9.4f} {reference[name]:10.4f} {diff:8.4f}")
    for name, note in skipped.items():
        print(f"skipped {name}: {note}")
    print(f"unique texts encoded by ours: {results['config']['unique_texts']} "
          f"(reference encodes {sum(2 * sum(1 for _ in p.open()) - 2 for p in files.values())})")
    ours_best, reference_best = min(ours_times), min(reference_times)
    print(f"wall time: ours {ours_best:.2f}s, reference {reference_best:.2f}s "
          f"(all runs: ours {[round(t, 2) for t in ours_times]}, reference {[round(t, 2) for t in reference_times]})")
    print(f"speed ratio (reference / ours): {reference_best / ours_best:.2f}x")
    if worst > 0.01:
        print(f"MISMATCH: scores differ by {worst:.4f} > 0.01")
        return 1
    print("scores agree within 0.01")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
