"""Bring your own trainer: SynthEmbed's InfoNCE (SimCSE hard-negative weight, all-gather) in a plain
sentence-transformers training script, on triplets read with `datasets.load_dataset("json", ...)`.

    python examples/train_infonce.py                      # the packaged MiniLM, offline
    python examples/train_infonce.py --model sentence-transformers/all-MiniLM-L6-v2 --data my_triplets.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

TRIPLETS = [
    ("A man is playing a guitar.", "Someone plays an instrument.", "A man is sleeping."),
    ("Two dogs run in a field.", "Dogs are running outside.", "Two cats sleep indoors."),
    ("A woman is cooking dinner.", "Someone prepares food.", "A woman is swimming."),
    ("Kids play football in the park.", "Children are playing a game.", "The park is empty."),
    ("A red car drives fast.", "A vehicle is moving quickly.", "A red car is parked."),
    ("The old man reads a book.", "An elderly person is reading.", "The old man is running."),
    ("A bird sings on a tree.", "A bird is singing.", "The tree is silent."),
    ("People wait for the bus.", "Commuters are waiting.", "Nobody is at the stop."),
]


def default_model() -> str:
    from synthembed.models.embedded import embedded_encoder_path

    return str(embedded_encoder_path())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="SentenceTransformer name or folder (default: packaged MiniLM)")
    parser.add_argument("--data", default=None, help="JSONL with anchor/positive/negative (default: 8 built-in rows)")
    parser.add_argument("--output", default=None)
    parser.add_argument("--epochs", type=float, default=2)
    args = parser.parse_args(argv)

    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    from synthembed.losses import InfoNCELoss

    workdir = Path(args.output or tempfile.mkdtemp(prefix="infonce-"))
    data = args.data
    if data is None:  # our synthesis outputs have this shape: {"id", "anchor", "positive", "negative"}
        data = workdir / "triplets.jsonl"
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(json.dumps({"id": str(i), "anchor": a, "positive": p, "negative": n}) + "\n"
                                for i, (a, p, n) in enumerate(TRIPLETS)), encoding="utf-8")
    dataset = load_dataset("json", data_files=str(data), split="train").select_columns(["anchor", "positive", "negative"])

    model = SentenceTransformer(args.model or default_model(), device="cpu")
    loss = InfoNCELoss(model, temperature=0.05, hard_negative_weight=0.5)  # b = 0.5 on each row's own negative
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / "checkpoints"), per_device_train_batch_size=4, num_train_epochs=args.epochs,
        learning_rate=5e-5, logging_steps=1, save_strategy="no", report_to="none", seed=42,
        batch_sampler=BatchSamplers.NO_DUPLICATES)
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=dataset, loss=loss)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"InfoNCE (b=0.5) on {len(dataset)} triplets, {len(losses)} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return {"losses": losses}


if __name__ == "__main__":
    main()
