"""STS tasks (SentEval protocol): cosine similarity of the two embeddings vs. gold, Spearman x100.

Files follow ../shared/data: ``<name>.<split>.tsv`` with columns ``score, sentence1, sentence2``
(STS12-16 add ``subset``), read from ``DATA_DIR/sts/`` or ``DATA_DIR`` itself. STS12-16 are scored
in SentEval's "all" setting: one Spearman over the concatenation of all subsets of a year (the
per-subset figures are reported alongside, for information only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthembed.errors import DataError
from synthembed.evaluation.base import TaskUnavailable
from synthembed.evaluation.compare import per_item_sts
from synthembed.evaluation.encoding import EmbeddingTable
from synthembed.evaluation.metrics import spearman
from synthembed.io.tables import read_delimited

logger = logging.getLogger(__name__)

STS_TASKS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
SPLITS = ("test", "dev", "train")

# file split name for each (task, requested split); a missing entry means the split does not exist
_FILE_SPLIT: dict[str, dict[str, str]] = {
    **{name: {"test": "test"} for name in ("sts12", "sts13", "sts14", "sts15", "sts16")},
    "stsb": {"test": "test", "dev": "dev", "train": "train"},
    "sickr": {"test": "test", "dev": "trial", "train": "train"},
}

# Hugging Face hub sources for users without a data folder: (dataset id, hub split, column names).
_HUB: dict[tuple[str, str], tuple[str, str, tuple[str, str, str]]] = {
    **{
        (name, "test"): (f"mteb/{name}-sts", "test", ("sentence1", "sentence2", "score"))
        for name in ("sts12", "sts13", "sts14", "sts15", "sts16")
    },
    ("stsb", "test"): ("mteb/stsbenchmark-sts", "test", ("sentence1", "sentence2", "score")),
    ("stsb", "dev"): ("mteb/stsbenchmark-sts", "validation", ("sentence1", "sentence2", "score")),
    ("stsb", "train"): ("mteb/stsbenchmark-sts", "train", ("sentence1", "sentence2", "score")),
    ("sickr", "test"): ("mteb/sickr-sts", "test", ("sentence1", "sentence2", "score")),
    ("sickr", "dev"): ("RobZamp/sick", "validation", ("sentence_A", "sentence_B", "relatedness_score")),
    ("sickr", "train"): ("RobZamp/sick", "train", ("sentence_A", "sentence_B", "relatedness_score")),
}


@dataclass
class STSTask:
    """One STS set: sentence pairs with gold scores (any scale; only ranks matter)."""

    name: str
    split: str
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray  # (n,) float64 gold similarity
    source: str
    subsets: list[str] | None = None  # STS12-16: the SemEval sub-dataset of each pair
    main_metric: str = field(default="spearman", init=False)

    def __post_init__(self) -> None:
        n = len(self.sentences1)
        if len(self.sentences2) != n or self.scores.shape != (n,):
            raise ValueError(f"{self.name}: sentences1, sentences2 and scores differ in length")
        if self.subsets is not None and len(self.subsets) != n:
            raise ValueError(f"{self.name}: subsets differ in length from the pairs")

    def __len__(self) -> int:
        return len(self.sentences1)

    def texts(self) -> Iterator[str]:
        yield from self.sentences1
        yield from self.sentences2

    def cosine_scores(self, table: EmbeddingTable) -> np.ndarray:
        """Cosine of each pair's embeddings: (n,)."""
        a = table.lookup(self.sentences1)  # (n, dim), unit rows
        b = table.lookup(self.sentences2)  # (n, dim)
        return np.einsum("nd,nd->n", a, b)

    def score(self, table: EmbeddingTable) -> dict[str, Any]:
        """Spearman x100 over all pairs ("all" setting), plus per-subset figures where known."""
        predicted = self.cosine_scores(table)
        result: dict[str, Any] = {
            "spearman": 100.0 * spearman(self.scores, predicted),
            "split": self.split,
            "n": len(self),
            # per-pair gold and cosine: what the paired bootstrap of evaluation.compare resamples
            "per_item": per_item_sts(self.sentences1, self.sentences2, self.scores, predicted),
        }
        if self.subsets is not None:
            per_subset = {}
            labels = np.asarray(self.subsets)
            for subset in dict.fromkeys(self.subsets):
                mask = labels == subset
                per_subset[subset] = 100.0 * spearman(self.scores[mask], predicted[mask])
            result["subsets"] = per_subset
        return result


def file_split(name: str, split: str) -> str:
    """The file-name split for a task's requested split (``dev`` is ``trial`` for SICK-R)."""
    _check_name_split(name, split)
    try:
        return _FILE_SPLIT[name][split]
    except KeyError:
        raise TaskUnavailable(
            f"{name} has no {split} split (dev sets exist for stsb and sickr only)"
        ) from None


def sts_file(name: str, split: str, data_dir: Path) -> Path | None:
    """Where the task's file lives under `data_dir` (``sts/`` first, then the folder itself), or None."""
    filename = f"{name}.{file_split(name, split)}.tsv"
    for candidate in (Path(data_dir) / "sts" / filename, Path(data_dir) / filename):
        if candidate.is_file():
            return candidate
    return None


def load_sts_task(name: str, split: str = "test", data_dir: Path | None = None) -> STSTask:
    """Load an STS task from `data_dir` (layout of ../shared/data) or, when None, the Hugging Face hub.

    Raises TaskUnavailable when the files are absent (the suite skips the task with the message) and
    DataError for a malformed file (named with its line).
    """
    _check_name_split(name, split)
    if data_dir is None:
        return _load_from_hub(name, split)
    path = sts_file(name, split, Path(data_dir))
    if path is None:
        expected = Path(data_dir) / "sts" / f"{name}.{file_split(name, split)}.tsv"
        raise TaskUnavailable(f"{name} {split}: file not found ({expected})")
    return read_sts_file(path, name=name, split=split)


def read_sts_file(path: Path, *, name: str, split: str) -> STSTask:
    """Parse a ``score, sentence1, sentence2[, subset]`` TSV into an STSTask (errors name file:line)."""
    rows = read_delimited(path, ("score", "sentence1", "sentence2"))
    if not rows:
        raise DataError(path, "no data rows after the header")
    has_subset = "subset" in rows[0][1]
    sentences1, sentences2, scores, subsets = [], [], [], []
    for line, row in rows:
        scores.append(_parse_score(row["score"], path, line))
        sentences1.append(row["sentence1"])
        sentences2.append(row["sentence2"])
        if has_subset:
            subsets.append(row["subset"])
    return STSTask(
        name=name,
        split=split,
        sentences1=sentences1,
        sentences2=sentences2,
        scores=np.asarray(scores, dtype=np.float64),
        source=str(path),
        subsets=subsets if has_subset else None,
    )


def _parse_score(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"score {text!r} is not a number", line) from None
    if not np.isfinite(value):
        raise DataError(path, f"score {text!r} is not a finite number", line)
    return value


def _check_name_split(name: str, split: str) -> None:
    if name not in STS_TASKS:
        raise ValueError(f"unknown STS task {name!r}; choose from {STS_TASKS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")


def _load_from_hub(name: str, split: str) -> STSTask:
    """Real hub loader for online users (lazy `datasets` import); failures become TaskUnavailable."""
    file_split(name, split)  # raises TaskUnavailable for a split the task does not have
    dataset_id, hub_split, (col1, col2, col_score) = _HUB[(name, split)]
    try:
        from datasets import load_dataset

        dataset = load_dataset(dataset_id, split=hub_split)
    except Exception as exc:  # network, missing repo, offline mode: all mean "not available here"
        raise TaskUnavailable(
            f"{name} {split}: no --data-dir/$SYNTHEMBED_DATA given and the hub dataset "
            f"{dataset_id!r} could not be loaded ({type(exc).__name__}: {exc})"
        ) from exc
    return STSTask(
        name=name,
        split=split,
        sentences1=[str(s) for s in dataset[col1]],
        sentences2=[str(s) for s in dataset[col2]],
        scores=np.asarray(dataset[col_score], dtype=np.float64),
        source=f"hf://{dataset_id}[{hub_split}]",
    )
