"""MGH ablation on the packaged SmolLM2 backbone: curriculum orders x poolings, one table (run on purpose).

One command does everything, resumably, under ``--work`` (git-ignored ``runs/`` by default):

1. synthesizes graded-negative records with the packaged SmolLM2 itself (partial MGH on wiki1m sentences
   by default; ``--mode full`` brainstorms tasks first), grammar-guided JSON via xgrammar, and reports the
   level-order check with the packaged MiniLM;
2. trains SmolLM2 (InfoNCE, in-batch + the stage's negative) on the *same* records with each curriculum
   order (``curriculum``, ``reverse``, ``random``, ``single:2``) under mean pooling, and with ``curriculum``
   under last-token and ATA pooling, all with the same steps, seed and hyper-parameters;
3. scores every model (and each untrained pooling) on STS-B dev (a fixed seeded sample of pairs,
   Spearman x100) and measures each pooling's encode speed relative to mean pooling;
4. prints one table and writes it to ``WORK/ablation.json``.

    nice -n 5 .venv/bin/python benchmarks/bench_mgh_ablation.py --records 128 --steps 24 --batch-size 16

Sizes are options; the defaults are the reduced run that fits a shared 2-core CPU (the published
ablation trained a 7B model on ~500k records: expect only coarse trends here). The packaged 135M model
writes no usable JSON records, so ``--data synth`` yields little with it; the ablation on data it can
write (``synthesize graded --mode levels``, one request per text) runs as stages of
``synthembed run configs/reproduce-cpu.yaml``, scored on the full STS-B dev set. The seven-task STS
average needs the test sets, which are not loaded here, so the table reports STS-B dev only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import synthembed.models.ata  # noqa: F401  (registers "ata")

DATA = Path(os.environ.get("SYNTHEMBED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RUNS = [
    ("curriculum", "mean"),
    ("curriculum", "ata"),
    ("curriculum", "last_token"),
    ("random", "mean"),
    ("reverse", "mean"),
    ("single:2", "mean"),
]


def query_rows(n: int) -> Any:
    """Queries for partial-mode MGH: the first wiki1m sentences of 8-25 words."""
    from synthembed.synthesis.inputs import rows_from_texts

    lines = (DATA / "unlabeled" / "wiki1m_sample.txt").read_text(encoding="utf-8").splitlines()
    picked = [line.strip() for line in lines if 8 <= len(line.split()) <= 25][: 3 * n]
    return rows_from_texts(picked, prefix="W", source="wiki1m_sample")


def synthesize(work: Path, n_records: int, batch_size: int, seed: int, mode: str, example: bool) -> Path:
    """Step 1: graded records written by SmolLM2 (resumable; cached requests).

    ``partial`` (default): positives and graded negatives for wiki1m sentences. ``full`` brainstorms tasks
    first; SmolLM2-135M mostly copies the template there (see the closing note), so partial is the default.
    """
    from synthembed.synthesis.graded import BrainstormTask, GradedTask, load_prompts, run_graded
    from synthembed.synthesis.guided_json import guided_transformers_backend
    from synthembed.synthesis.runner import RunOptions

    out = work / f"data-{mode}{'' if example else '-noexample'}"
    prompts = load_prompts(use_example=example)
    task = GradedTask(prompts, partial=mode == "partial", temperature=0.7, top_p=0.9, max_new_tokens=256)
    backend = guided_transformers_backend(model="embedded-llm", batch_size=batch_size)
    options = RunOptions(out, limit=None, seed=seed, cache_path=work / "cache.sqlite", progress=False,
                         shard_size=16, flush_seconds=20)
    try:
        if mode == "partial":
            rows = query_rows(n_records)
            summary = run_graded(task, backend, RunOptions(**{**vars(options), "limit": n_records}), rows=rows)
        else:
            brainstorm = BrainstormTask(prompts, per_request=8, families=("symmetric", "short-short"),
                                        temperature=0.8, max_new_tokens=400)
            summary = run_graded(task, backend, RunOptions(**{**vars(options), "limit": n_records}),
                                 brainstorm=brainstorm)
    finally:
        backend.close()
    print(summary.text(), flush=True)
    return out


def mined_snli(work: Path, n_records: int, seed: int) -> Path:
    """Fallback data when the LLM cannot write graded records: SNLI (premise, entailment) with graded negatives.

    Level 1 = the human contradiction (same scene, one fact changed); levels 2-4 = other entailment sentences
    ranked by MiniLM similarity to the premise: the nearest (2), rank ~20 (3), a random far one (4).
    Written as ordinary graded records to ``WORK/data-snli-mined/records.jsonl``.
    """
    from synthembed.io.atomic import atomic_write_text
    from synthembed.io.tables import read_delimited
    from synthembed.models.encoder import load_encoder

    out = work / "data-snli-mined"
    path = out / "records.jsonl"
    if path.is_file():
        return out
    rows = [r for _, r in read_delimited(DATA / "nli" / "snli_devtest_triplets.tsv", delimiter="\t")]
    seen, triplets = set(), []
    for r in rows:  # one triplet per premise
        if r["premise"] not in seen:
            seen.add(r["premise"])
            triplets.append(r)
    triplets = triplets[: max(n_records, 600)]
    pool = [t["entailment"] for t in triplets]
    encoder = load_encoder("embedded")
    premises = encoder.encode([t["premise"] for t in triplets[:n_records]], normalize_embeddings=True)  # (n, dim)
    candidates = encoder.encode(pool, normalize_embeddings=True)  # (pool, dim)
    rng = random.Random(seed)
    lines = []
    for i, t in enumerate(triplets[:n_records]):
        order = [j for j in np.argsort(-(candidates @ premises[i])) if j != i]  # most similar first
        picks = [pool[order[0]], pool[order[19]], pool[order[rng.randrange(len(order) // 2, len(order))]]]
        negatives = [t["contradiction"], *picks]
        lines.append(json.dumps({"id": f"snli{i}", "task": "snli-mined", "query": t["premise"],
                                 "positive": t["entailment"],
                                 "negatives": [{"level": k + 1, "text": x} for k, x in enumerate(negatives)],
                                 "meta": {"source": "snli_devtest_triplets + MiniLM-mined levels 2-4"}}))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return out


def level_check(data: Path) -> dict[str, Any]:
    from synthembed.models.encoder import load_encoder
    from synthembed.synthesis.graded import level_order_report
    from synthembed.training.curriculum import read_graded_records

    return level_order_report(read_graded_records(data), load_encoder("embedded"))


def stsb_dev_sample(n_pairs: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    from synthembed.io.tables import read_delimited

    path = DATA / "sts" / "stsb.dev.tsv"
    rows = [r for _, r in read_delimited(path, delimiter="\t")]
    rows = random.Random(seed).sample(rows, min(n_pairs, len(rows)))
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], np.array([float(r["score"]) for r in rows])


def spearman(model: Any, sample: tuple[list[str], list[str], np.ndarray]) -> float:
    from scipy.stats import spearmanr

    left, right, gold = sample
    with torch.inference_mode():
        a = model.encode(left, batch_size=32, normalize_embeddings=True)  # (pairs, dim)
        b = model.encode(right, batch_size=32, normalize_embeddings=True)  # (pairs, dim)
    return 100.0 * float(spearmanr((a * b).sum(axis=1), gold).statistic)


def base_model(pooling: str, max_length: int) -> Any:
    from synthembed.models.encoder import load_encoder
    from synthembed.models.modality import pin_text_modality

    model = load_encoder("embedded-llm", pooling=pooling, max_length=max_length)
    pin_text_modality(model)
    return model


def encode_speed(pooling: str, texts: list[str], max_length: int) -> float:
    model = base_model(pooling, max_length).eval()
    with torch.inference_mode():
        model.encode(texts[:32], batch_size=32)
        start = time.perf_counter()
        model.encode(texts, batch_size=32)
    return len(texts) / (time.perf_counter() - start)


def train_one(work: Path, data: Path, order: str, pooling: str, args: argparse.Namespace) -> Path:
    from synthembed.config import TrainConfig
    from synthembed.training.curriculum import CurriculumSpec, train_graded

    name = f"{order.replace(':', '')}-{pooling}"
    config = TrainConfig(data=str(data), output=str(work / "models" / name), model="embedded-llm", pooling=pooling,
                         max_length=args.max_length, batch_size=args.batch_size, lr=args.lr, epochs=1,
                         temperature=0.05, seed=args.seed, precision="fp32", logging_steps=4)
    spec = CurriculumSpec(order=order, steps_per_epoch=args.steps, seed=args.seed)
    # short runs: no intermediate checkpoints (each would write the model and Adam state, ~1.6 GB)
    return train_graded(config, spec, dev=False, training_args={"save_strategy": "no"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/mgh_ablation"))
    parser.add_argument("--records", type=int, default=128, help="graded records to synthesize")
    parser.add_argument("--gen-batch-size", type=int, default=8)
    parser.add_argument("--data", default="synth",
                        help="synth: graded records written by SmolLM2 (JSON mode); snli-mined: SNLI with MiniLM-mined "
                        "levels; or a folder/JSONL of graded records already written, e.g. the graded_snli stage of "
                        "configs/reproduce-cpu.yaml (levels mode)")
    parser.add_argument("--mode", choices=["partial", "full"], default="partial",
                        help="partial: graded negatives for wiki1m sentences; full: brainstorm tasks first")
    parser.add_argument("--example", action="store_true",
                        help="show the packaged demonstration (SmolLM2-135M mostly copies it, so off by default)")
    parser.add_argument("--steps", type=int, default=24, help="training steps per run (split into stages)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--dev-pairs", type=int, default=400, help="STS-B dev pairs scored (fixed seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default=None, help="comma list of order/pooling, e.g. curriculum/mean,random/mean")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    runs = RUNS if not args.runs else [tuple(r.split("/")) for r in args.runs.split(",")]
    results_path = work / "ablation.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results["settings"] = {k: str(v) for k, v in vars(args).items()}

    started = time.time()
    if args.data == "synth":
        data = synthesize(work, args.records, args.gen_batch_size, args.seed, args.mode, args.example)
        results["synthesis_seconds"] = round(time.time() - started)
    elif args.data == "snli-mined":
        data = mined_snli(work, args.records, args.seed)
    elif Path(args.data).exists():
        data = Path(args.data)
    else:
        parser.error(f"--data: {args.data!r} is neither synth, snli-mined nor an existing records folder/file")
    results["data"] = str(data)
    if "level_check" not in results:
        results["level_check"] = level_check(data)
    print("level check (MiniLM):", json.dumps(results["level_check"]))
    sample = stsb_dev_sample(args.dev_pairs, args.seed)

    scores: dict[str, float] = results.setdefault("scores", {})
    for pooling in sorted({p for _, p in runs}):
        key = f"untrained/{pooling}"
        if key not in scores:
            scores[key] = spearman(base_model(pooling, args.max_length).eval(), sample)
            results_path.write_text(json.dumps(results, indent=1))
    from synthembed.models.encoder import load_encoder

    for order, pooling in runs:
        key = f"{order}/{pooling}"
        if key in scores:
            continue
        t0 = time.time()
        folder = train_one(work, data, order, pooling, args)
        scores[key] = spearman(load_encoder(folder).eval(), sample)
        results.setdefault("train_seconds", {})[key] = round(time.time() - t0)
        results_path.write_text(json.dumps(results, indent=1))
        print(f"{key}: STS-B dev {scores[key]:.2f} ({time.time() - t0:.0f}s)", flush=True)

    speed_texts = sample[0][:128]
    speeds = results.setdefault("speed", {})
    for pooling in ("mean", "last_token", "ata"):
        if pooling not in speeds:
            speeds[pooling] = encode_speed(pooling, speed_texts, args.max_length)
    results_path.write_text(json.dumps(results, indent=1))

    print(f"\nMGH ablation: SmolLM2-135M, {results['level_check'].get('records')} graded records ({args.data}), "
          f"{args.steps} steps x batch "
          f"{args.batch_size}, lr {args.lr}, max_length {args.max_length}; STS-B dev = {len(sample[2])} sampled pairs")
    print(f"{'order':<12}{'pooling':<12}{'STS-B dev':>10}{'untrained':>11}{'7-task avg':>12}{'speed vs mean':>15}")
    for order, pooling in runs:
        key = f"{order}/{pooling}"
        print(f"{order:<12}{pooling:<12}{scores[key]:>10.2f}{scores[f'untrained/{pooling}']:>11.2f}{'n/a':>12}"
              f"{speeds[pooling] / speeds['mean']:>14.2f}x")


if __name__ == "__main__":
    main()
