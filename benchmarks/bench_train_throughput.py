"""Throughput: our `fit` + `InfoNCELoss` vs a plain sentence-transformers trainer with MNRL.

Same model (deep copies of one load), same triplets, batch, max length and number of steps, in one
process; the runs alternate (reference then ours, then ours then reference, ...) so machine load hits both alike,
and each side's best round counts. Time is the training loop only (on_train_begin -> on_train_end),
measured by the same callback on both sides. Prints steps/s of both and the ratio ours/reference
(goal >= 0.95).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_train_throughput.py --steps 10 --rounds 3
    python benchmarks/bench_train_throughput.py --precision bf16   # our side in bf16 autocast, reference fp32
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="load_encoder reference (default: all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "nli" / "snli_devtest_triplets.tsv")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="fp32", help="our side: fp32 | bf16 (reference stays fp32)")
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def timing_callback() -> object:
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds = 0.0
            self.steps = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.start
            self.steps = state.global_step

    return Timer()


def run_reference(model, dataset, args, workdir: Path) -> float:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    timer = timing_callback()
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / "reference"),
        per_device_train_batch_size=args.batch_size,
        learning_rate=5e-5,
        max_steps=args.steps,
        save_strategy="no",
        report_to="none",
        seed=42,
        disable_tqdm=True,
        logging_steps=10,
        dataloader_pin_memory=False,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=dataset,
        loss=MultipleNegativesRankingLoss(model, scale=20.0), callbacks=[timer],
    )
    trainer.train()
    return timer.steps / timer.seconds


def run_ours(model, dataset, args, workdir: Path, index: int) -> float:
    from synthembed.losses.infonce import InfoNCELoss
    from synthembed.training.trainer import FitSettings, fit

    timer = timing_callback()
    settings = FitSettings(
        batch_size=args.batch_size, lr=5e-5, max_steps=args.steps, seed=42, precision=args.precision,
        eval_on_start=False, keep_checkpoints=False, resume=False,
    )
    fit(model, dataset, InfoNCELoss(model, temperature=0.05), workdir / f"ours{index}", settings=settings,
        callbacks=[timer], training_args={"save_strategy": "no"})
    return timer.steps / timer.seconds


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.ERROR)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from synthembed.models.encoder import load_encoder
    from synthembed.training.data import load_training_rows
    from synthembed.models.modality import pin_text_modality

    rows = load_training_rows(args.data, "premise", "entailment", "contradiction",
                              limit=args.steps * args.batch_size)
    dataset = rows.to_dataset()
    base = load_encoder(args.model, max_length=args.max_length)
    pin_text_modality(base)
    reference_rates, our_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            # alternate which side goes first, so a drifting machine load favours neither
            if round_index % 2 == 0:
                reference_rates.append(run_reference(copy.deepcopy(base), dataset, args, Path(tmp)))
                our_rates.append(run_ours(copy.deepcopy(base), dataset, args, Path(tmp), round_index))
            else:
                our_rates.append(run_ours(copy.deepcopy(base), dataset, args, Path(tmp), round_index))
                reference_rates.append(run_reference(copy.deepcopy(base), dataset, args, Path(tmp)))
            print(f"round {round_index + 1}: reference {reference_rates[-1]:.3f} steps/s, ours {our_rates[-1]:.3f} steps/s",
                  flush=True)
    best_reference, best_ours = max(reference_rates), max(our_rates)
    print(f"model={args.model} batch={args.batch_size} max_length={args.max_length} steps={args.steps} "
          f"rounds={args.rounds} threads={torch.get_num_threads()} our precision={args.precision}")
    print(f"reference (ST trainer + MNRL): {best_reference:.3f} steps/s")
    print(f"ours (fit + InfoNCELoss):      {best_ours:.3f} steps/s")
    print(f"ratio ours/reference: {best_ours / best_reference:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
