"""The curriculum as a sentence-transformers batch sampler, under the plain `SentenceTransformerTrainer`:
no duplicate texts, set_epoch, resume from a checkpoint on the same schedule, equal to `synthembed train`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synthembed.errors import SynthEmbedError
from synthembed.training.curriculum import CurriculumSampler, graded_rows, level_major_dataset


def records(n: int) -> list[dict]:
    return [{"query": f"query {i}", "positive": f"positive {i}",
             "negatives": [{"level": level, "text": f"neg{level} {i}"} for level in (1, 2, 3, 4)]} for i in range(n)]


def _recording_loss(model, seen: list[list[str]]):
    """InfoNCE that also records each batch's negatives (their text says level and record)."""
    from synthembed.losses import InfoNCELoss

    class Recording(InfoNCELoss):
        def forward(self, features, labels=None):  # type: ignore[override]
            texts = model.tokenizer.batch_decode(features[2]["input_ids"], skip_special_tokens=True)
            seen.append(texts)
            return super().forward(features, labels)

    return Recording(model, temperature=0.05)


def _trainer(model, dataset, sampler, output: Path, seen: list, **extra):
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    args = SentenceTransformerTrainingArguments(
        output_dir=str(output), per_device_train_batch_size=4, batch_sampler=sampler, report_to="none",
        logging_steps=1, use_cpu=True, seed=7, learning_rate=1e-4, **{"num_train_epochs": 1, "save_strategy": "no", **extra})
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=_recording_loss(model, seen))


def _model(tiny_bert_dir: Path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    model.max_seq_length = 16
    return model


def test_no_duplicate_texts_and_one_query_per_batch() -> None:
    from datasets import Dataset

    # records 0 and 1 share a positive: never in one batch; each query is in the dataset 4 times (one row per level)
    rows = graded_rows(records(8))
    rows.positives[1] = rows.positives[0]
    dataset = level_major_dataset(rows)
    sampler = CurriculumSampler(order="random", seed=1)(dataset, batch_size=4)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            texts = [t for i in batch for t in (dataset[i]["anchor"], dataset[i]["positive"], dataset[i]["negative"])]
            assert len(texts) == len(set(texts)) and len({i % 8 for i in batch}) == 4
    same = Dataset.from_dict({"anchor": ["a"] * 8, "positive": ["p"] * 8, "negative": [f"n{i}" for i in range(8)]})
    with pytest.raises(SynthEmbedError, match="without repeating a text"):
        list(CurriculumSampler(order="single:1", levels=(1, 2))(same, batch_size=2))
    with pytest.raises(SynthEmbedError, match="do not divide"):
        CurriculumSampler()(same.select(range(7)), batch_size=2)
    with pytest.raises(SynthEmbedError, match="unknown curriculum order"):
        CurriculumSampler(order="sideways")


def test_plain_trainer_calls_set_epoch_stage_per_epoch(tiny_bert_dir: Path, tmp_path: Path) -> None:
    dataset = level_major_dataset(graded_rows(records(8)))
    seen: list[list[str]] = []
    sampler = CurriculumSampler(order="curriculum", epochs_per_stage=True)
    _trainer(_model(tiny_bert_dir), dataset, sampler, tmp_path / "o", seen, num_train_epochs=3).train()
    levels_per_step = [{t.split()[0] for t in batch} for batch in seen]
    assert levels_per_step == [{"neg4"}] * 2 + [{"neg3"}] * 2 + [{"neg2"}] * 2


def test_resume_from_checkpoint_keeps_the_schedule(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from transformers import TrainerCallback

    dataset = level_major_dataset(graded_rows(records(16)))
    sampler = CurriculumSampler(order="curriculum")
    full: list[list[str]] = []
    _trainer(_model(tiny_bert_dir), dataset, sampler, tmp_path / "full", full).train()
    assert [{t.split()[0] for t in b} for b in full] == [{"neg4"}, {"neg3"}, {"neg2"}, {"neg1"}]

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                control.should_training_stop = True

    first: list[list[str]] = []
    interrupted = _trainer(_model(tiny_bert_dir), dataset, sampler, tmp_path / "cut", first,
                           save_strategy="steps", save_steps=2)
    interrupted.add_callback(StopAt())
    interrupted.train()
    assert first == full[:2] and (tmp_path / "cut" / "checkpoint-2").is_dir()

    rest: list[list[str]] = []
    resumed = _trainer(_model(tiny_bert_dir), dataset, sampler, tmp_path / "cut", rest)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-2"))
    assert first + rest == full


def test_plain_trainer_with_sampler_equals_synthembed_train_curriculum(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from synthembed.cli import main
    from synthembed.losses import InfoNCELoss

    graded = records(12)
    data = tmp_path / "graded.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in graded), encoding="utf-8")
    output = tmp_path / "cli"
    assert main(["train", "--data", str(data), "--output", str(output), "--model", str(tiny_bert_dir),
                 "--curriculum", "curriculum", "--batch-size", "4", "--epochs", "1", "--max-length", "16",
                 "--precision", "fp32", "--seed", "42", "--no-dev", "--config", str(_keep_logs(tmp_path))]) == 0
    checkpoint = max((output / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    cli = [e["loss"] for e in json.loads((checkpoint / "trainer_state.json").read_text())["log_history"] if "loss" in e]

    model = _model(tiny_bert_dir)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "plain"), per_device_train_batch_size=4, num_train_epochs=1, learning_rate=5e-5,
        seed=42, data_seed=42, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
        batch_sampler=CurriculumSampler(order="curriculum"))
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=level_major_dataset(graded_rows(graded)),
                                         loss=InfoNCELoss(model, temperature=0.05))
    trainer.train()
    plain = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(plain) == len(cli) == 3
    np.testing.assert_allclose(plain, cli, rtol=1e-5, atol=1e-6)


def _keep_logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs.yaml"
    path.write_text("logging_steps: 1\nkeep_checkpoints: true\n", encoding="utf-8")
    return path
