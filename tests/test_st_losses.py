"""Our losses as plain sentence-transformers losses: a plain `SentenceTransformerTrainer` on a `datasets`
dataset, no SynthEmbed trainer, gives the same loss curve as `synthembed train`; the listwise loss trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from synthembed.evaluation.metrics import ndcg_at_k

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


def _plain_st_losses(model, dataset, loss, tmp_path: Path, *, batch_size: int = 4, steps: int | None = None,
                     lr: float = 5e-5, seed: int = 42, **extra) -> list[float]:
    """Train with sentence-transformers' own trainer and return the per-step training losses."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    args = SentenceTransformerTrainingArguments(**{
        "output_dir": str(tmp_path / "plain"), "per_device_train_batch_size": batch_size, "num_train_epochs": 1,
        "max_steps": steps or -1, "learning_rate": lr, "seed": seed, "data_seed": seed, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "use_cpu": True, **extra})
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _cli_losses(tmp_path: Path, tiny_bert_dir: Path, data: Path, extra: dict | None = None) -> list[float]:
    """Run `synthembed train` on `data` (fp32, no dev, every step logged); its per-step training losses."""
    from synthembed.cli import main

    output = tmp_path / "cli-model"
    config = {"data": str(data), "output": str(output), "model": str(tiny_bert_dir), "batch_size": 4,
              "epochs": 1, "max_length": 32, "precision": "fp32", "logging_steps": 1, "keep_checkpoints": True,
              "seed": 42, **(extra or {})}
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", "--config", str(config_file), "--no-dev"]) == 0
    checkpoint = max((output / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _tiny_model(tiny_bert_dir: Path, max_length: int = 32):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")  # a plain HF folder: Transformer + mean pooling
    model.max_seq_length = max_length
    return model


def test_infonce_plain_st_trainer_equals_synthembed_train(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from datasets import load_dataset

    from synthembed.losses import InfoNCELoss

    data = tmp_path / "triplets.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "anchor": a, "positive": p, "negative": n}) + "\n"
                            for i, (a, p, n) in enumerate(TRIPLETS * 2)), encoding="utf-8")
    cli = _cli_losses(tmp_path, tiny_bert_dir, data, {"hard_negative_weight": 0.5})

    # what a user writes: datasets + sentence-transformers, our loss
    dataset = load_dataset("json", data_files=str(data), split="train").select_columns(["anchor", "positive", "negative"])
    model = _tiny_model(tiny_bert_dir)
    plain = _plain_st_losses(model, dataset, InfoNCELoss(model, temperature=0.05, hard_negative_weight=0.5), tmp_path)
    assert len(plain) == len(cli) == 4
    np.testing.assert_allclose(plain, cli, rtol=1e-5, atol=1e-6)
    assert plain[0] != plain[-1]


def test_graded_loss_plain_st_trainer_equals_synthembed_train(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """Graded records (four levels) through `synthembed train` = GradedNegativesLoss on the level columns."""
    from datasets import Dataset

    from synthembed.losses import GradedNegativesLoss

    records = [{"query": a, "positive": p,
                "negatives": [{"level": lv, "text": f"{n} (level {lv})"} for lv in (3, 1, 4, 2)]}
               for a, p, n in TRIPLETS * 2]
    data = tmp_path / "graded.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    cli = _cli_losses(tmp_path, tiny_bert_dir, data)

    rows = {"anchor": [r["query"] for r in records], "positive": [r["positive"] for r in records]}
    for level in (1, 2, 3, 4):
        rows[f"negative_{level}"] = [next(n["text"] for n in r["negatives"] if n["level"] == level) for r in records]
    model = _tiny_model(tiny_bert_dir)
    plain = _plain_st_losses(model, Dataset.from_dict(rows), GradedNegativesLoss(model, level_weights=[0, 0, 0, 0]),
                             tmp_path)
    np.testing.assert_allclose(plain, cli, rtol=1e-5, atol=1e-6)


def test_graded_loss_level_weights_and_errors() -> None:
    from synthembed.losses import GradedNegativesLoss, InfoNCELoss

    torch.manual_seed(0)
    columns = [torch.randn(4, 8) for _ in range(4)]  # anchor, positive, level 1, level 2
    same = GradedNegativesLoss(torch.nn.Identity(), level_weights=[0.3, 0.3], gather_across_devices=False)
    reference = InfoNCELoss(torch.nn.Identity(), hard_negative_weight=0.3, gather_across_devices=False)
    assert torch.allclose(same.compute_loss_from_embeddings(columns), reference.compute_loss_from_embeddings(columns))
    # a weight on level 1 only raises the loss (that negative's logit grows) and differs from weighting level 2
    level1 = GradedNegativesLoss(torch.nn.Identity(), [1.0, 0.0], gather_across_devices=False)
    level2 = GradedNegativesLoss(torch.nn.Identity(), [0.0, 1.0], gather_across_devices=False)
    plain = GradedNegativesLoss(torch.nn.Identity(), [0.0, 0.0], gather_across_devices=False)
    a, b, c = (loss.compute_loss_from_embeddings(columns) for loss in (level1, level2, plain))
    assert a > c and b > c and not torch.isclose(a, b)
    with pytest.raises(ValueError, match="2 level weights but the batch has 1"):
        level1.compute_loss_from_embeddings(columns[:3])
    with pytest.raises(ValueError, match="negative_1"):
        GradedNegativesLoss(torch.nn.Identity()).compute_loss_from_embeddings(columns[:2])


# ---------------------------------------------------------------- listwise, graded relevance

WORDS = ["guitar", "river", "kitchen", "football", "engine", "library", "garden", "winter", "market", "castle",
         "violin", "forest", "bakery", "tennis", "harbor", "museum", "desert", "candle", "bridge", "planet"]


def _graded_lists(n_lists: int = 6) -> dict[str, list]:
    """Lists of a query and 4 candidates whose grades (3, 2, 1, 0 in random positions) no untrained model
    can know: word overlap says nothing about them, so a good NDCG has to be learned."""
    rng = np.random.default_rng(0)
    columns: dict[str, list] = {"query": [], **{f"candidate_{k}": [] for k in range(1, 5)}, "label": []}
    for i in range(n_lists):
        words = rng.choice(WORDS, size=5, replace=False)
        columns["query"].append(f"the {words[0]} story")
        for k in range(1, 5):
            columns[f"candidate_{k}"].append(f"a {words[k]} story")
        columns["label"].append([float(g) for g in rng.permutation([3, 2, 1, 0])])
    return columns


def _mean_ndcg(model, lists: dict[str, list]) -> float:
    scores = []
    for i, query in enumerate(lists["query"]):
        candidates = [lists[f"candidate_{k}"][i] for k in range(1, 5)]
        q, c = model.encode([query], convert_to_numpy=True), model.encode(candidates, convert_to_numpy=True)
        cos = (c @ q[0]) / (np.linalg.norm(c, axis=1) * np.linalg.norm(q[0]))
        grades = lists["label"][i]
        ranked = [grades[j] for j in np.argsort(-cos)]
        scores.append(ndcg_at_k(ranked, grades, k=4))
    return float(np.mean(scores))


def test_listwise_graded_mode_trains_a_bi_encoder_and_improves_ndcg(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from datasets import Dataset

    from synthembed.losses import ListwiseRankingLoss

    lists = _graded_lists()
    model = _tiny_model(tiny_bert_dir, max_length=16)
    before = _mean_ndcg(model, lists)
    loss = ListwiseRankingLoss(model, targets="graded", scale=20.0, seed=0)
    losses = _plain_st_losses(model, Dataset.from_dict(lists), loss, tmp_path, batch_size=3, steps=40, lr=2e-3)
    after = _mean_ndcg(model, lists)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert after > before + 0.1, (before, after)
    assert after > 0.95, (before, after)
    print(f"NDCG@4 on the training lists: {before:.3f} -> {after:.3f}")


def test_listwise_graded_mode_value_and_errors() -> None:
    from synthembed.losses import ListwiseRankingLoss
    from synthembed.losses.listmle import listmle

    torch.manual_seed(0)
    columns = [torch.randn(2, 8) for _ in range(4)]  # query + 3 candidates
    labels = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 2.0]])
    loss = ListwiseRankingLoss(torch.nn.Identity(), targets="graded", scale=10.0)
    value = loss.compute_loss_from_embeddings(columns, labels)["listmle"]
    q = torch.nn.functional.normalize(columns[0], dim=-1)
    c = torch.nn.functional.normalize(torch.stack(columns[1:], 1), dim=-1)
    scores = (c @ q.unsqueeze(-1)).squeeze(-1) * 10.0  # (2, 3)
    expected = listmle(scores, torch.tensor([[0, 2, 1], [2, 1, 0]]))
    assert torch.isclose(value, expected)
    with pytest.raises(ValueError, match="one relevance per candidate"):
        loss.compute_loss_from_embeddings(columns, labels[:, :2])
    with pytest.raises(ValueError, match="no teacher"):
        ListwiseRankingLoss(torch.nn.Identity(), targets="graded", distill_weight=1.0)
    with pytest.raises(ValueError, match="targets must be"):
        ListwiseRankingLoss(torch.nn.Identity(), targets="pairs")


def test_listwise_teacher_mode_is_chain_ranking_loss() -> None:
    from synthembed.losses import ChainRankingLoss, ListwiseRankingLoss

    torch.manual_seed(0)
    columns = [torch.randn(2, 8) for _ in range(4)]
    teacher = torch.nn.functional.normalize(torch.randn(2, 4, 8), dim=-1)
    labels = teacher @ teacher.transpose(1, 2)  # (2, 4, 4)
    a = ListwiseRankingLoss(torch.nn.Identity(), targets="teacher", infonce_weight=0.5, seed=3)
    b = ChainRankingLoss(torch.nn.Identity(), infonce_weight=0.5, seed=3)
    ta, tb = a.compute_loss_from_embeddings(columns, labels), b.compute_loss_from_embeddings(columns, labels)
    assert ta.keys() == tb.keys() == {"listmle", "infonce"}
    assert all(torch.isclose(ta[k], tb[k]) for k in ta)


def test_listwise_teacher_mode_plain_st_trainer_equals_synthembed_refine(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """Ranking refinement through a plain trainer (teacher matrices computed by the user) = `synthembed refine`."""
    from datasets import Dataset

    from synthembed.cli import main
    from synthembed.losses import ListwiseRankingLoss

    chains = [[a, p, f"{p} Perhaps.", n] for a, p, n in TRIPLETS[:6]]
    data = tmp_path / "chains.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "sentences": c}) + "\n" for i, c in enumerate(chains)),
                    encoding="utf-8")
    dev = tmp_path / "dev" / "sts"
    dev.mkdir(parents=True)
    lines = ["score\tsentence1\tsentence2"] + [f"{i % 5}\t{a}\t{p}" for i, (a, p, _) in enumerate(TRIPLETS)]
    for name in ("stsb.dev.tsv", "sickr.trial.tsv"):
        (dev / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "refined"
    assert main(["refine", "--data", str(data), "--model", str(tiny_bert_dir), "--output", str(out), "--data-dir",
                 str(dev.parent), "--eval-steps", "6", "--precision", "fp32", "--lr", "1e-4", "--seed", "42"]) == 0
    cli = [e["loss"] for e in json.loads((out / "refine_results.json").read_text())["train_log"] if "loss" in e]

    model = _tiny_model(tiny_bert_dir)
    flat = [s for chain in chains for s in chain]
    embeddings = model.encode(flat, convert_to_tensor=True, normalize_embeddings=True).reshape(len(chains), 4, -1)
    teacher = (embeddings @ embeddings.transpose(1, 2)).tolist()  # (lists, 4, 4): the frozen start as teacher
    dataset = Dataset.from_dict({**{f"s{k}": [c[k] for c in chains] for k in range(4)}, "label": teacher})
    loss = ListwiseRankingLoss(model, targets="teacher", scale=20.0, teacher_scale=20.0, omega=0.5, seed=42)
    # refine logs every eval_steps // 2 = 3 steps (mean loss of the 3) and evaluates on dev after step 6 only: the
    # trainer's evaluate() advances torch's RNG, so an evaluation between steps changes the later dropout masks
    plain = _plain_st_losses(model, dataset, loss, tmp_path, batch_size=1, lr=1e-4, logging_steps=3)
    assert len(plain) == len(cli) == 2
    np.testing.assert_allclose(plain, cli, rtol=1e-4, atol=1e-5)
