"""Bring your own trainer: MGH graded negatives in a plain sentence-transformers script, two ways:

1. all levels in every row with `GradedNegativesLoss` (one hard-negative weight per level);
2. one level per stage, easiest first, with `CurriculumSampler` as the trainer's batch sampler.

    python examples/train_graded_negatives.py
"""

from __future__ import annotations

import argparse
import tempfile

RECORDS = [  # MGH records: level 1 the hardest negative, level 4 the easiest
    {"query": "how do bees make honey", "positive": "Bees turn flower nectar into honey in the hive.",
     "negatives": [{"level": 1, "text": "Bees turn flower nectar into wax in the hive."},
                   {"level": 2, "text": "Bees pollinate flowers in spring."},
                   {"level": 3, "text": "Honey is sold at farmers' markets."},
                   {"level": 4, "text": "The train leaves at noon."}]},
    {"query": "why do leaves change colour", "positive": "Leaves lose chlorophyll in autumn, showing other pigments.",
     "negatives": [{"level": 1, "text": "Leaves gain chlorophyll in spring, turning green."},
                   {"level": 2, "text": "Trees drop their leaves in winter."},
                   {"level": 3, "text": "Autumn festivals celebrate the harvest."},
                   {"level": 4, "text": "He repaired the laptop screen."}]},
    {"query": "what makes bread rise", "positive": "Yeast produces gas that makes dough rise.",
     "negatives": [{"level": 1, "text": "Baking soda makes cakes rise."},
                   {"level": 2, "text": "Bread is baked in a hot oven."},
                   {"level": 3, "text": "Bakeries open early in the morning."},
                   {"level": 4, "text": "The river flooded the valley."}]},
    {"query": "how do planes fly", "positive": "Wings create lift as air flows over them.",
     "negatives": [{"level": 1, "text": "Wings create drag as air flows under them."},
                   {"level": 2, "text": "Jet engines burn kerosene."},
                   {"level": 3, "text": "Airports have long security lines."},
                   {"level": 4, "text": "She knitted a wool scarf."}]},
]


def default_model() -> str:
    from synthembed.models.embedded import embedded_encoder_path

    return str(embedded_encoder_path())


def _args(output: str, **extra):
    from sentence_transformers import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(output_dir=output, per_device_train_batch_size=2, learning_rate=5e-5,
                                                logging_steps=1, save_strategy="no", report_to="none", seed=42, **extra)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="SentenceTransformer name or folder (default: packaged MiniLM)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    output = args.output or tempfile.mkdtemp(prefix="graded-")

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer

    from synthembed.losses import GradedNegativesLoss, InfoNCELoss
    from synthembed.training.curriculum import CurriculumSampler, graded_rows, level_major_dataset

    # 1. every level as a negative column: anchor, positive, negative_1 (hardest) .. negative_4
    wide = {"anchor": [r["query"] for r in RECORDS], "positive": [r["positive"] for r in RECORDS]}
    for level in (1, 2, 3, 4):
        wide[f"negative_{level}"] = [next(n["text"] for n in r["negatives"] if n["level"] == level) for r in RECORDS]
    model = SentenceTransformer(args.model or default_model(), device="cpu")
    loss = GradedNegativesLoss(model, level_weights=[0.5, 0.2, 0.0, 0.0])
    trainer = SentenceTransformerTrainer(model=model, args=_args(f"{output}/wide", num_train_epochs=2),
                                         train_dataset=Dataset.from_dict(wide), loss=loss)
    trainer.train()
    wide_losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    print(f"GradedNegativesLoss, 4 levels per row: {len(wide_losses)} steps, loss {wide_losses[0]:.4f} -> {wide_losses[-1]:.4f}")

    # 2. the curriculum: one row per (record, level); the sampler picks the level of each batch
    dataset = level_major_dataset(graded_rows(RECORDS))
    model = SentenceTransformer(args.model or default_model(), device="cpu")
    seen: list[str] = []

    tokenizer = model.tokenizer

    def normalised(text: str) -> str:  # the text as the loss sees it after tokenisation
        return tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)

    texts_to_level = {normalised(n["text"]): n["level"] for r in RECORDS for n in r["negatives"]}

    class RecordingLevels(InfoNCELoss):
        def forward(self, features, labels=None):  # noqa: ANN001
            texts = tokenizer.batch_decode(features[2]["input_ids"], skip_special_tokens=True)
            seen.append(",".join(sorted({str(texts_to_level.get(t, "?")) for t in texts})))
            return super().forward(features, labels)

    trainer = SentenceTransformerTrainer(
        model=model, args=_args(f"{output}/curriculum", num_train_epochs=4, batch_sampler=CurriculumSampler(
            order="curriculum", epochs_per_stage=True)),
        train_dataset=dataset, loss=RecordingLevels(model, temperature=0.05))
    trainer.train()
    print(f"CurriculumSampler (a stage per epoch): negative level of each batch: {' '.join(seen)}")
    return {"wide_losses": wide_losses, "curriculum_levels": seen}


if __name__ == "__main__":
    main()
