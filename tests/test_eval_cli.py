"""`synthembed evaluate` end to end on a tiny random BERT (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthembed.cli import main

HEADER = "score\tsentence1\tsentence2\n"


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    sts = tmp_path / "data" / "sts"
    sts.mkdir(parents=True)
    rows = "5.0\tthe cat sat\tthe cat sat down\n1.0\tthe cat sat\ta plane flew\n3.0\tdogs run\tdogs run fast\n"
    (sts / "stsb.test.tsv").write_text(HEADER + rows)
    (sts / "stsb.dev.tsv").write_text(HEADER + rows)
    (sts / "sickr.trial.tsv").write_text(HEADER + rows)
    return tmp_path / "data"


def test_evaluate_writes_results_and_prints_table(tiny_bert_dir: Path, data_dir: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "out" / "r.json"
    code = main(
        ["evaluate", str(tiny_bert_dir), "--tasks", "stsb,sts12", "--data-dir", str(data_dir),
         "--output", str(output), "--no-progress", "--max-length", "16", "--batch-size", "2"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "stsb" in printed and "skipped sts12" in printed and f"wrote {output}" in printed
    results = json.loads(output.read_text())
    assert results["model"] == str(tiny_bert_dir)
    assert results["tasks"]["stsb"]["split"] == "test" and results["tasks"]["stsb"]["n"] == 3
    assert "sts12" in results["skipped"]
    assert results["config"]["max_length"] == 16 and results["config"]["batch_size"] == 2
    assert "sentence-transformers" in results["versions"]
    assert not list(output.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_evaluate_dev_split_uses_env_data_dir(
    tiny_bert_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("SYNTHEMBED_DATA", str(data_dir))
    code = main(["evaluate", str(tiny_bert_dir), "--tasks", "stsb,sickr", "--split", "dev", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "stsb   dev" in printed and "sickr  dev" in printed


def test_evaluate_bad_file_is_one_clean_error_line(tiny_bert_dir: Path, data_dir: Path, capsys) -> None:
    (data_dir / "sts" / "stsb.test.tsv").write_text(HEADER + "1.0\ta\tb\nbad\ta\tb\n")
    code = main(["evaluate", str(tiny_bert_dir), "--tasks", "stsb", "--data-dir", str(data_dir), "--no-progress"])
    assert code == 2
    assert f"stsb.test.tsv:3: score 'bad' is not a number" in capsys.readouterr().err


def test_evaluate_usage_errors(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="data folder not found"):
        main(["evaluate", str(tiny_bert_dir), "--data-dir", str(tmp_path / "absent")])
    with pytest.raises(SystemExit, match="unknown task"):
        main(["evaluate", str(tiny_bert_dir), "--tasks", "nope", "--data-dir", str(tmp_path), "--no-progress"])


def test_evaluate_nothing_available_returns_1(tiny_bert_dir: Path, tmp_path: Path, capsys) -> None:
    code = main(["evaluate", str(tiny_bert_dir), "--tasks", "sts7", "--data-dir", str(tmp_path), "--no-progress"])
    assert code == 1
    assert capsys.readouterr().out.count("skipped") == 7
