"""Bring your own trainer: listwise ranking (ListMLE) for a bi-encoder on graded lists, in a plain
sentence-transformers training script; prints NDCG@n on the training lists before and after.

Graded mode needs no teacher: each row is a query, n candidates and n relevance grades. (For ranked
chains with a teacher and the rank prior, use ``targets="teacher"``, or ``synthembed refine``.)

    python examples/train_listwise.py
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

LISTS = [  # query, candidates, grades (3 = paraphrase, 2 = same topic, 1 = related, 0 = unrelated)
    ("How do plants make food?", ["Plants make sugar from light by photosynthesis.", "Leaves contain chlorophyll.",
                                  "Animals eat plants for energy.", "The stock market closed higher."], [3, 2, 1, 0]),
    ("Why is the sky blue?", ["Air scatters blue sunlight more than red.", "Sunsets are often red.",
                              "Clouds are made of water droplets.", "He bought a new bicycle."], [3, 2, 1, 0]),
    ("How does a vaccine work?", ["A vaccine trains the immune system to recognise a germ.",
                                  "Antibodies bind to viruses.", "Hospitals treat sick people.",
                                  "The recipe needs two eggs."], [3, 2, 1, 0]),
    ("What causes earthquakes?", ["Earthquakes happen when tectonic plates slip.", "Faults are cracks in the crust.",
                                  "Volcanoes erupt lava.", "She plays the violin."], [3, 2, 1, 0]),
]


def default_model() -> str:
    from synthembed.models.embedded import embedded_encoder_path

    return str(embedded_encoder_path())


def mean_ndcg(model, lists) -> float:
    from synthembed.evaluation.metrics import ndcg_at_k

    scores = []
    for query, candidates, grades in lists:
        q = model.encode([query], normalize_embeddings=True)[0]
        c = model.encode(candidates, normalize_embeddings=True)
        ranked = [grades[j] for j in np.argsort(-(c @ q))]
        scores.append(ndcg_at_k(ranked, grades, k=len(grades)))
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="SentenceTransformer name or folder (default: packaged MiniLM)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from synthembed.losses import ListwiseRankingLoss

    rng = np.random.default_rng(0)
    shuffled = []  # candidate order must not give the answer away
    for query, candidates, grades in LISTS:
        order = rng.permutation(len(candidates))
        shuffled.append((query, [candidates[j] for j in order], [grades[j] for j in order]))
    columns = {"query": [q for q, _, _ in shuffled]}
    for k in range(len(shuffled[0][1])):
        columns[f"candidate_{k + 1}"] = [c[k] for _, c, _ in shuffled]
    columns["label"] = [[float(g) for g in grades] for _, _, grades in shuffled]

    model = SentenceTransformer(args.model or default_model(), device="cpu")
    before = mean_ndcg(model, shuffled)
    loss = ListwiseRankingLoss(model, targets="graded", scale=20.0, seed=0)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=args.output or tempfile.mkdtemp(prefix="listwise-"), per_device_train_batch_size=2,
        max_steps=args.steps, learning_rate=args.lr, logging_steps=5, save_strategy="no", report_to="none", seed=42)
    SentenceTransformerTrainer(model=model, args=training_args, train_dataset=Dataset.from_dict(columns), loss=loss).train()
    after = mean_ndcg(model, shuffled)
    print(f"ListMLE (graded) on {len(shuffled)} lists of {len(shuffled[0][1])}: NDCG {before:.3f} -> {after:.3f}")
    return {"ndcg_before": before, "ndcg_after": after}


if __name__ == "__main__":
    main()
