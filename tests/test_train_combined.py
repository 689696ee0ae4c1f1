"""`synthembed train` on several sources at once (SynCSE triplets + graded records) and with a curriculum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from synthembed.training.data import concatenate_rows, load_training_rows
from tests.test_train import _triplet_file, dev_dir  # noqa: F401  (fixture)


def _graded_file(tmp_path: Path, n: int = 12) -> Path:
    path = tmp_path / "graded.jsonl"
    with path.open("w") as handle:
        for i in range(n):
            record = {
                "id": f"g{i}", "task": "t", "query": f"what is item {i}", "positive": f"item {i} is a thing",
                "negatives": [{"level": level, "text": f"level {level} distractor {i}"} for level in (3, 1, 4, 2)],
            }
            handle.write(json.dumps(record) + "\n")
    return path


def test_graded_records_load_as_query_positive_and_levels_in_order(tmp_path: Path) -> None:
    rows = load_training_rows(_graded_file(tmp_path))
    assert rows.columns["anchor"][0] == "what is item 0"
    assert [rows.columns[f"negative_{k}"][0] for k in range(1, 5)] == [f"level {k} distractor 0" for k in range(1, 5)]


def test_synthesis_folder_is_accepted_as_data(tmp_path: Path) -> None:
    folder = tmp_path / "syn"
    folder.mkdir()
    (folder / "records.jsonl").write_text(_triplet_file(tmp_path).read_text())
    assert len(load_training_rows(folder)) == len(load_training_rows(_triplet_file(tmp_path)))


def test_concatenation_keeps_the_fewest_negatives_and_counts_the_cut(tmp_path: Path) -> None:
    triplets, graded = load_training_rows(_triplet_file(tmp_path)), load_training_rows(_graded_file(tmp_path))
    both = concatenate_rows([triplets, graded])
    assert len(both) == len(triplets) + len(graded)
    assert sorted(both.columns) == ["anchor", "negative_1", "positive"]
    assert both.columns["negative_1"][-1] == "level 1 distractor 11"  # the hardest level is the one kept
    assert sum(both.skipped.values()) == len(graded)


def test_cli_trains_on_two_sources_and_with_a_curriculum(tmp_path: Path, tiny_bert_dir: Path, dev_dir: Path) -> None:  # noqa: F811
    from synthembed.cli import main

    common = ["--model", str(tiny_bert_dir), "--pooling", "mean", "--batch-size", "4", "--max-length", "16",
              "--data-dir", str(dev_dir), "--no-dev"]
    mixed = tmp_path / "mixed"
    assert main(["train", "--data", str(_triplet_file(tmp_path)), str(_graded_file(tmp_path)),
                 "--output", str(mixed), "--max-steps", "2", *common]) == 0
    record = yaml.safe_load((mixed / "train_config.yaml").read_text())
    assert len(record["config"]["data"]) == 2

    staged = tmp_path / "staged"
    assert main(["train", "--data", str(_graded_file(tmp_path)), "--output", str(staged), "--curriculum", "curriculum",
                 "--stage-fractions", "1,1,1,1", "--epochs", "1", *common]) == 0
    record = yaml.safe_load((staged / "train_config.yaml").read_text())
    assert record["curriculum"]["order"] == "curriculum" and sum(record["curriculum"]["stage_lengths"]) == 3

    assert main(["train", "--data", "a.jsonl", "b.jsonl", "--output", str(tmp_path / "x"), "--curriculum", "reverse"]) == 2
