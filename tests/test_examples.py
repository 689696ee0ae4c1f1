"""Every script under examples/ runs on a tiny model and prints its result (docs/ecosystem.md shows them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, argv: list[str]) -> dict:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def test_every_example_has_a_test() -> None:
    tested = {"train_infonce", "train_listwise", "train_graded_negatives", "mteb_offline_sts", "published_datasets"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_train_infonce(tiny_bert_dir: Path, tmp_path: Path, capsys) -> None:
    result = run_example("train_infonce", ["--model", str(tiny_bert_dir), "--output", str(tmp_path)])
    assert len(result["losses"]) == 4 and "InfoNCE (b=0.5) on 8 triplets, 4 steps" in capsys.readouterr().out


def test_train_listwise_improves_ndcg(tiny_bert_dir: Path, tmp_path: Path, capsys) -> None:
    result = run_example("train_listwise", ["--model", str(tiny_bert_dir), "--steps", "30", "--lr", "2e-3",
                                            "--output", str(tmp_path)])
    assert result["ndcg_after"] > result["ndcg_before"]
    assert "NDCG" in capsys.readouterr().out


def test_train_graded_negatives(tiny_bert_dir: Path, tmp_path: Path, capsys) -> None:
    result = run_example("train_graded_negatives", ["--model", str(tiny_bert_dir), "--output", str(tmp_path)])
    assert len(result["wide_losses"]) == 4
    assert result["curriculum_levels"] == ["4", "4", "3", "3", "2", "2", "1", "1"]  # a stage per epoch, easiest first
    assert "negative level of each batch: 4 4 3 3 2 2 1 1" in capsys.readouterr().out


def test_mteb_offline_sts(tiny_bert_dir: Path, capsys) -> None:
    pytest.importorskip("mteb")
    result = run_example("mteb_offline_sts", ["--model", str(tiny_bert_dir)])
    assert result["mteb"] == pytest.approx(result["ours"], abs=1e-6)
    assert "mteb.evaluate cosine_spearman" in capsys.readouterr().out


def test_published_datasets_on_a_local_copy(tiny_bert_dir: Path, tmp_path: Path, capsys) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "SynCSE-partial-NLI"
    folder.mkdir()
    rows = [(f"A premise number {i}.", f"An entailment {i}.", f"A contradiction {i}.") for i in range(10)]
    pq.write_table(pa.table({"sent0": [r[0] for r in rows], "sent1": [r[1] for r in rows],
                             "hard_neg": [r[2] for r in rows]}), folder / "train.parquet")
    result = run_example("published_datasets", ["--data", f"hf:{folder}", "--model", str(tiny_bert_dir),
                                                "--limit", "8", "--steps", "2", "--output", str(tmp_path / "o")])
    assert result["rows"] == 8 and result["columns"] == ["anchor", "positive", "negative_1"]
    assert "trained 2 steps" in capsys.readouterr().out
