"""Input rows: text/TSV/CSV/JSONL/dataset columns, stable ids, and bad inputs (clear error or counted skip)."""

from __future__ import annotations

import json

import pytest

from synthembed.errors import DataError
from synthembed.synthesis.inputs import read_dataset_column, read_input_file


def test_text_file_ids_skips_and_head(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("first line\n\n   \nsecond  line\nfirst line\nthird\n")
    rows = read_input_file(path)
    assert [(r.id, r.text) for r in rows] == [("L1", "first line"), ("L4", "second line"), ("L6", "third")]
    assert rows.skipped == {"empty": 2, "duplicate_input": 1}
    assert rows.rows[1].source == f"{path}:4"
    head = rows.head(2)
    assert [r.id for r in head] == ["L1", "L4"] and head.skipped == {"empty": 2}
    assert len(read_input_file(path, dedupe=False)) == 4


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nbroken \xff\xfe here\n")
    with pytest.raises(DataError, match=r"bad.txt:2: invalid UTF-8"):
        read_input_file(path)


def test_ten_megabyte_line_is_a_counted_skip(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("ok sentence\n" + "x" * 10_000_000 + "\nanother sentence\n")
    rows = read_input_file(path)
    assert [r.text for r in rows] == ["ok sentence", "another sentence"]
    assert rows.skipped == {"too_long": 1}
    tsv = tmp_path / "big.tsv"
    tsv.write_text("text\tlabel\nok\t1\n" + "y" * 10_000_000 + "\t2\n")
    rows = read_input_file(tsv)
    assert [r.text for r in rows] == ["ok"] and rows.skipped == {"too_long": 1}


def test_tsv_csv_jsonl_columns(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("premise\thypothesis\nA man sleeps.\tSomeone rests.\n\nA dog runs.\tAn animal moves.\n")
    rows = read_input_file(tsv, column="premise")
    assert [(r.id, r.text) for r in rows] == [("L2", "A man sleeps."), ("L4", "A dog runs.")]
    assert rows.rows[0].fields == {"hypothesis": "Someone rests."}
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('id,text\nx1,"Hello, world"\nx2,Bye\n')
    assert [(r.id, r.text) for r in read_input_file(csv_path)] == [("x1", "Hello, world"), ("x2", "Bye")]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(json.dumps({"sentence": "One."}) + "\n" + json.dumps({"sentence": ""}) + "\n")
    rows = read_input_file(jsonl, column="sentence")
    assert [r.text for r in rows] == ["One."] and rows.skipped == {"empty": 1}


@pytest.mark.parametrize(
    ("name", "content", "column", "message"),
    [
        ("t.tsv", "premise\thypothesis\na\tb\n", "text", r"t.tsv:1: missing column"),
        ("t.jsonl", '{"text": "a"}\n{"other": "b"}\n', "text", r"t.jsonl:2: missing field 'text'"),
        ("t.jsonl", '{"text": "a"}\n{broken\n', "text", r"t.jsonl:2: invalid JSON"),
        ("t.jsonl", '{"text": 5}\n', "text", r"t.jsonl:1: field 'text' must be a string"),
        ("t.tsv", "text\tb\nx\ty\tz\n", "text", r"t.tsv:2: expected 2 fields"),
        ("t.txt", "\n\n", None, r"t.txt: no usable lines"),
        ("t.txt", "a\n", "text", r"needs a .tsv"),
        ("t.csv", 'id,text\nx,"a"\nx,"b"\n', "text", r"duplicate row id 'x'"),
    ],
)
def test_bad_inputs_raise_clear_errors(tmp_path, name, content, column, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_input_file(path, column=column)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_input_file(tmp_path / "none.txt")


def test_dataset_column_from_local_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"sentence": ["a b", "", "c d"], "n": [1, 2, 3]}).save_to_disk(str(folder))
    rows = read_dataset_column(str(folder), "sentence")
    assert [(r.id, r.text) for r in rows] == [("R0", "a b"), ("R2", "c d")] and rows.skipped == {"empty": 1}
    with pytest.raises(DataError, match="missing column 'text'"):
        read_dataset_column(str(folder), "text")
    with pytest.raises(DataError, match="cannot load dataset"):
        read_dataset_column(str(tmp_path / "nothing-here"), "text")
