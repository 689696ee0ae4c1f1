"""The papers' published datasets as training inputs, the same way ``synthembed train`` reads them:
``hf:sjtu-lit/SynCSE-partial-NLI`` (sent0 / sent1 / hard_neg) into a plain sentence-transformers run.

    python examples/published_datasets.py --data hf:sjtu-lit/SynCSE-partial-NLI --limit 1000   # needs the network
    python examples/published_datasets.py --data hf:/path/to/a/local/copy                        # offline

The CLI does the same: ``synthembed train --data hf:sjtu-lit/SynCSE-partial-NLI --output runs/syncse``;
``synthembed refine --data hf:leoner24/RankingSentences-NLI-LLaMA3-8B-32 ...`` for the ranked chains.
"""

from __future__ import annotations

import argparse
import tempfile


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="hf:sjtu-lit/SynCSE-partial-NLI",
                        help="hf:ID[@REVISION][?split=..&streaming=true] or hf:/local/folder")
    parser.add_argument("--model", default=None, help="SentenceTransformer name or folder (default: packaged MiniLM)")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from synthembed.losses import InfoNCELoss
    from synthembed.models.embedded import embedded_encoder_path
    from synthembed.training.data import load_training_rows

    rows = load_training_rows(args.data, limit=args.limit)  # the declared column mapping, or --columns for others
    dataset = rows.to_dataset()  # a datasets.Dataset: anchor, positive, negative_1
    print(f"{rows.source}: {len(dataset)} rows, columns {dataset.column_names}")
    model = SentenceTransformer(args.model or str(embedded_encoder_path()), device="cpu")
    training_args = SentenceTransformerTrainingArguments(
        output_dir=args.output or tempfile.mkdtemp(prefix="published-"), per_device_train_batch_size=4,
        max_steps=args.steps, learning_rate=5e-5, logging_steps=1, save_strategy="no", report_to="none", seed=42)
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=dataset,
                                         loss=InfoNCELoss(model, temperature=0.05))
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    print(f"trained {len(losses)} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return {"rows": len(dataset), "columns": dataset.column_names, "losses": losses}


if __name__ == "__main__":
    main()
