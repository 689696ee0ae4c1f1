"""STS loading (files, splits, bad input) and scoring in SentEval's "all" setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from synthembed.errors import DataError
from synthembed.evaluation.encoding import encode_texts
from synthembed.evaluation.hash_encoder import HashEncoder
from synthembed.evaluation.sts import STS_TASKS, load_sts_task, read_sts_file
from synthembed.evaluation.suite import evaluate_model

HEADER = "score\tsentence1\tsentence2\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def sts12_rows() -> list[tuple[float, str, str, str]]:
    """Two subsets whose score ranges differ, so "all" differs from the mean of per-subset figures."""
    rng = np.random.default_rng(0)
    words = "cat dog bird fish tree road car house river hill sun moon".split()
    rows = []
    for subset, offset in (("MSRpar", 0.0), ("headlines", 2.5)):
        for _ in range(12):
            a = " ".join(rng.choice(words, size=4))
            b = " ".join(rng.choice(words, size=4))
            rows.append((round(float(rng.uniform(0, 2.5)) + offset, 2), a, b, subset))
    return rows


def test_all_setting_is_one_spearman_over_concatenated_subsets(tmp_path: Path) -> None:
    rows = sts12_rows()
    body = "score\tsentence1\tsentence2\tsubset\n" + "".join(f"{s}\t{a}\t{b}\t{sub}\n" for s, a, b, sub in rows)
    write(tmp_path / "sts" / "sts12.test.tsv", body)
    task = load_sts_task("sts12", "test", tmp_path)
    assert task.subsets is not None and set(task.subsets) == {"MSRpar", "headlines"}

    encoder = HashEncoder(dim=32)
    result = task.score(encode_texts(encoder, task.texts()))

    # hand computation: cosine per pair from the raw encoder, one Spearman over all pairs
    def cosine(a: str, b: str) -> float:
        u, v = encoder.embed(a), encoder.embed(b)
        return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))

    predicted = np.array([cosine(a, b) for _, a, b, _ in rows])
    gold = np.array([s for s, *_ in rows])
    expected_all = 100 * spearmanr(gold, predicted).statistic
    assert result["spearman"] == pytest.approx(expected_all, abs=1e-4)
    per_subset = [100 * spearmanr(gold[:12], predicted[:12]).statistic, 100 * spearmanr(gold[12:], predicted[12:]).statistic]
    assert result["subsets"]["MSRpar"] == pytest.approx(per_subset[0], abs=1e-4)
    assert result["subsets"]["headlines"] == pytest.approx(per_subset[1], abs=1e-4)
    assert abs(result["spearman"] - np.mean(per_subset)) > 1.0  # the two settings really differ here
    assert result["n"] == 24 and result["split"] == "test"


def test_dev_split_maps_to_stsb_dev_and_sick_trial(tmp_path: Path) -> None:
    write(tmp_path / "sts" / "stsb.dev.tsv", HEADER + "1.0\ta b\tc d\n2.0\te f\tg h\n")
    write(tmp_path / "sts" / "sickr.trial.tsv", HEADER + "3.5\ta b\tc d\n4.0\te f\tg h\n")
    assert load_sts_task("stsb", "dev", tmp_path).source.endswith("stsb.dev.tsv")
    assert load_sts_task("sickr", "dev", tmp_path).source.endswith("sickr.trial.tsv")


def test_files_directly_in_data_dir_are_found(tmp_path: Path) -> None:
    write(tmp_path / "stsb.test.tsv", HEADER + "1.0\ta\tb\n")
    assert len(load_sts_task("stsb", "test", tmp_path)) == 1


def test_missing_tasks_are_skipped_with_a_note(tmp_path: Path) -> None:
    write(tmp_path / "sts" / "stsb.test.tsv", HEADER + "1.0\ta b\tc d\n2.0\ta b\ta b\n3.0\tx\ty z\n")
    results = evaluate_model(HashEncoder(), "sts7", data_dir=tmp_path, show_progress=False)
    assert list(results["tasks"]) == ["stsb"]
    assert set(results["skipped"]) == set(STS_TASKS) - {"stsb"}
    assert "sts12.test.tsv" in results["skipped"]["sts12"]
    assert results["average_over"] == ["stsb"]


def test_sts12_has_no_dev_split(tmp_path: Path) -> None:
    results = evaluate_model(HashEncoder(), "sts12,stsb", split="dev", data_dir=tmp_path, show_progress=False)
    assert "no dev split" in results["skipped"]["sts12"]
    assert "stsb.dev.tsv" in results["skipped"]["stsb"]


def test_unknown_names_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown STS task"):
        load_sts_task("sts99", "test", tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_sts_task("stsb", "validation", tmp_path)


# ---- bad input: each a DataError naming the file and the line --------------------------------


@pytest.mark.parametrize(
    "content,line,fragment",
    [
        ("score\tsentence_a\tsentence2\n1\ta\tb\n", 1, "missing column"),
        (HEADER + "1.0\ta\tb\n2.0\tonly one\n", 3, "expected 3 fields"),
        (HEADER + "1.0\ta\tb\nhigh\ta\tb\n", 3, "is not a number"),
        (HEADER + "nan\ta\tb\n", 2, "not a finite number"),
        (HEADER.encode() + b"1.0\ta\tb\n2.0\t\xff\xfe\tb\n", 3, "invalid UTF-8"),
    ],
    ids=["wrong-header", "short-row", "non-numeric-score", "nan-score", "invalid-utf8"],
)
def test_bad_files_name_file_and_line(tmp_path: Path, content: str | bytes, line: int, fragment: str) -> None:
    path = write(tmp_path / "sts" / "stsb.test.tsv", content)
    with pytest.raises(DataError, match=fragment) as info:
        load_sts_task("stsb", "test", tmp_path)
    assert str(info.value).startswith(f"{path}:{line}:")
    assert info.value.line == line


def test_missing_file_read_directly_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found") as info:
        read_sts_file(tmp_path / "nope.tsv", name="stsb", split="test")
    assert "nope.tsv" in str(info.value)


def test_header_only_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "sts" / "stsb.test.tsv", HEADER)
    with pytest.raises(DataError, match="no data rows"):
        load_sts_task("stsb", "test", tmp_path)


def test_shared_stsb_test_loads(shared_data_dir: Path) -> None:
    task = load_sts_task("stsb", "test", shared_data_dir)
    assert len(task) == 1379 and task.scores.min() >= 0 and task.scores.max() <= 5


@pytest.mark.slow
def test_embedded_minilm_reproduces_published_stsb_test(shared_data_dir: Path) -> None:
    """all-MiniLM-L6-v2's published STS-B test figure is 82.03 (Spearman x100 of cosine)."""
    from synthembed.models.encoder import load_encoder

    results = evaluate_model(load_encoder("embedded"), "stsb", data_dir=shared_data_dir, show_progress=False)
    assert results["tasks"]["stsb"]["spearman"] == pytest.approx(82.03, abs=0.05)
    assert results["tasks"]["stsb"]["n"] == 1379
