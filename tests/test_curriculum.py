"""Curriculum over graded negatives: stage order, stage lengths, batches, and a real trainer run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from synthembed.errors import DataError, SynthEmbedError
from synthembed.training.curriculum import (
    CurriculumBatchSampler,
    CurriculumSpec,
    graded_rows,
    level_major_dataset,
    parse_order,
)


def records(n: int) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "query": f"query {i}",
            "positive": f"positive {i}",
            "negatives": [{"level": level, "text": f"neg{level} {i}"} for level in (1, 2, 3, 4)],
        }
        for i in range(n)
    ]


def levels_of(batch: list[int], n: int) -> set[int]:
    return {(1, 2, 3, 4)[index // n] for index in batch}


def test_parse_order() -> None:
    assert parse_order("curriculum") == ("staged", (4, 3, 2, 1))
    assert parse_order("reverse") == ("staged", (1, 2, 3, 4))
    assert parse_order("random") == ("random", ())
    assert parse_order("single:2") == ("staged", (2,))
    for bad in ("single:7", "single:x", "sideways"):
        with pytest.raises(SynthEmbedError):
            parse_order(bad)


@pytest.mark.parametrize(
    ("order", "expected"),
    [("curriculum", [4, 4, 3, 3, 2, 2, 1, 1]), ("reverse", [1, 1, 2, 2, 3, 3, 4, 4]), ("single:3", [3] * 8)],
)
def test_stage_order_and_equal_lengths(order: str, expected: list[int]) -> None:
    n = 40
    sampler = CurriculumBatchSampler(n, batch_size=5, spec=CurriculumSpec(order=order))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 8
    got = []
    for batch in batches:
        levels = levels_of(batch, n)
        assert len(levels) == 1 and len(batch) == 5
        assert len({i % n for i in batch}) == 5  # no query twice in a batch
        got.append(levels.pop())
    assert got == expected


def test_configurable_stage_lengths_and_steps() -> None:
    spec = CurriculumSpec(order="curriculum", stage_fractions=[1, 1, 2, 6], steps_per_epoch=20)
    sampler = CurriculumBatchSampler(30, batch_size=4, spec=spec)
    counts = Counter(levels_of(b, 30).pop() for b in sampler)
    assert counts == {4: 2, 3: 2, 2: 4, 1: 12}
    assert spec.stage_lengths(7) == [1, 1, 1, 4]  # largest remainders of 0.7, 0.7, 1.4, 4.2
    with pytest.raises(SynthEmbedError):
        CurriculumSpec(order="curriculum", stage_fractions=[1, 1]).stage_lengths(10)


def test_stage_covers_each_record_once_per_pass() -> None:
    n = 12
    sampler = CurriculumBatchSampler(n, batch_size=4, spec=CurriculumSpec(order="single:1", steps_per_epoch=3))
    seen = [i for batch in sampler for i in batch]
    assert sorted(seen) == list(range(n))


def test_random_mixes_levels_and_is_seeded() -> None:
    n = 64
    spec = CurriculumSpec(order="random", seed=3)
    first = list(CurriculumBatchSampler(n, 16, spec))
    again = list(CurriculumBatchSampler(n, 16, spec))
    assert first == again
    assert len(Counter(lv for b in first for lv in levels_of(b, n))) == 4
    other = CurriculumBatchSampler(n, 16, spec)
    other.set_epoch(1)
    assert list(other) != first


def test_epochs_per_stage() -> None:
    sampler = CurriculumBatchSampler(20, 5, CurriculumSpec(order="curriculum", epochs_per_stage=True))
    seen = []
    for epoch in range(5):
        sampler.set_epoch(epoch)
        seen.append({lv for b in sampler for lv in levels_of(b, 20)})
    assert seen == [{4}, {3}, {2}, {1}, {1}]


def test_rows_and_level_major_dataset() -> None:
    recs = records(3) + [{"query": "q", "positive": "p", "negatives": [{"level": 1, "text": "n"}]}]
    rows = graded_rows(recs)
    assert len(rows) == 3 and rows.skipped == {"missing_level": 1}
    dataset = level_major_dataset(rows)
    assert dataset.column_names == ["anchor", "positive", "negative"]
    assert dataset[0]["negative"] == "neg1 0" and dataset[3 * 3 + 2]["negative"] == "neg4 2"
    with pytest.raises(DataError, match="records.jsonl"):
        graded_rows([{"query": "q"}], source="records.jsonl")


def test_trainer_uses_the_sampler(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A real sentence-transformers trainer run sees the batches in curriculum order."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from synthembed.models.encoder import load_encoder

    n = 16
    rows = graded_rows(records(n))
    dataset = level_major_dataset(rows)
    sampler = CurriculumBatchSampler(n, 4, CurriculumSpec(order="curriculum"))
    model = load_encoder(tiny_bert_dir)
    seen: list[set[str]] = []

    class Recording(MultipleNegativesRankingLoss):
        def forward(self, features, labels=None):  # type: ignore[override]
            ids = features[2]["input_ids"]
            texts = model.tokenizer.batch_decode(ids, skip_special_tokens=True)
            seen.append({t.split()[0] for t in texts})
            return super().forward(features, labels)

    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_train_epochs=1,
        batch_sampler=sampler.batch_sampler_factory(), report_to=[], save_strategy="no", logging_steps=100,
        use_cpu=True, seed=0,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=Recording(model))
    trainer.train()
    assert seen == [{"neg4"}, {"neg3"}, {"neg2"}, {"neg1"}]


def test_train_graded_end_to_end(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """`train_graded` on a JSONL of graded records: trains, saves, records the curriculum."""
    import yaml

    from synthembed.config import TrainConfig
    from synthembed.models.encoder import load_encoder
    from synthembed.training.curriculum import train_graded

    data = tmp_path / "graded.jsonl"
    data.write_text("\n".join(__import__("json").dumps(r) for r in records(12)) + "\n", encoding="utf-8")
    config = TrainConfig(data=str(data), output=str(tmp_path / "model"), model=str(tiny_bert_dir), batch_size=4,
                         epochs=1, max_length=16, precision="fp32")
    before = load_encoder(tiny_bert_dir).encode(["query 1"])
    out = train_graded(config, CurriculumSpec(order="reverse"), dev=False)
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert saved["curriculum"]["order"] == "reverse" and saved["curriculum"]["stage_lengths"] == [1, 1, 1, 0]
    # 12 records / batch 4 = 3 steps an epoch (the level-major dataset has 48 rows: not 12 steps)
    assert saved["fit"]["total_steps"] == 3 and saved["result"]["steps_done"] == 3
    after = load_encoder(out).encode(["query 1"])
    assert abs(after - before).max() > 1e-6
