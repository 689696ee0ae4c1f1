"""Training rows from a file or a Hugging Face dataset, as a `datasets.Dataset` of text columns.

Output columns: ``anchor``, ``positive`` and ``negative_1 .. negative_k`` (k >= 0), the order
`InfoNCELoss` expects. Sources:

- our JSONL records ``{"id", "anchor", "positive", "negative"}`` where ``negative`` is a string or a
  list of strings (graded negatives), and any JSONL/TSV/CSV file with named columns;
- a Hugging Face dataset: a ``save_to_disk`` folder or a hub name (``dataset_split`` picks the split);
- ``hf:`` references to `datasets.load_dataset` with the published datasets' column mappings
  (`synthembed.io.hf_datasets`).

Rows with an empty/missing anchor or positive (or, when negatives are used, no negative) are
skipped and counted by reason; a malformed row (a field that is not text, e.g. ``"anchor": 42``) is
skipped too, counted as ``malformed <field>``, and reported with its file:line and field (the first
few in the log, all in ``LoadedRows.examples``); when a row's negative list is longer than the
shortest one, only the first k (k = the fewest negatives any usable row has) are kept, and that is
counted too. No usable row, more than ``max_bad_share`` (default `MAX_BAD_SHARE` = 0.5) of the rows
skipped, or a missing column, is a `DataError` naming the file (and line).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthembed.errors import DataError
from synthembed.io.tables import read_records
from synthembed.synthesis.records import record_files

logger = logging.getLogger(__name__)

MAX_BAD_SHARE = 0.5  # more than this share of unusable rows: the data is not what the columns say
_EXAMPLES = 5

FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".tsv", ".csv", ".txt")


@dataclass
class LoadedRows:
    """Usable rows as column lists, plus what was skipped and why."""

    columns: dict[str, list[str]]
    source: str
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # "file:line: why" of the first skipped rows

    def __len__(self) -> int:
        return len(self.columns["anchor"])

    def to_dataset(self) -> Any:
        from datasets import Dataset

        return Dataset.from_dict(self.columns)


def _text(value: Any) -> str | None:
    """A non-empty stripped string, or None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _negatives(value: Any) -> list[str] | None:
    """The negative field as a list of non-empty strings; None if unusable.

    Accepts a string, a list of strings, or graded negatives ``[{"level": 1, "text": ...}, ...]``
    (ordered hardest first, by level).
    """
    if isinstance(value, str):
        return [value.strip()] if value.strip() else None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        if not all(isinstance(v.get("level"), int) for v in value):
            return None
        value = [v.get("text") for v in sorted(value, key=lambda v: v["level"])]
    if isinstance(value, (list, tuple)):
        texts = [_text(v) for v in value]
        if texts and all(t is not None for t in texts):
            return texts  # type: ignore[return-value]
    return None


def _problem(row: dict[str, Any], name: str) -> str | None:
    """Why a text field is unusable: 'malformed' (not a string), 'empty', or None."""
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return "empty"
    if not isinstance(value, str):
        return f"malformed: {name!r} is {type(value).__name__} {str(value)[:40]!r}, not text"
    return None


def rows_from_records(
    records: list[tuple[int | str, dict[str, Any]]],
    source: str,
    anchor: str = "anchor",
    positive: str = "positive",
    negative: str | None = "negative",
    limit: int | None = None,
    max_bad_share: float = MAX_BAD_SHARE,
) -> LoadedRows:
    """Turn (line, record) pairs into training columns; see the module docstring for the rules.

    A line is a number in `source`, or a ``"file:line"`` string when the records come from several files.
    """
    if records:
        line, first = records[0]
        present = set().union(*(set(r) for _, r in records[:1000]))
        # graded (MGH) records name their fields query / negatives: train on them as they are
        if anchor == "anchor" and "anchor" not in present and "query" in present:
            anchor = "query"
        if negative == "negative" and "negative" not in present and "negatives" in present:
            negative = "negatives"
        wanted = [c for c in (anchor, positive, negative) if c is not None]
        missing = [c for c in wanted if c not in present]
        if missing:
            message = (f"missing column(s) {missing}; the data has {sorted(present)} "
                       "(set anchor_column/positive_column/negative_column, or negative_column: null for pairs)")
            raise DataError(line, message) if isinstance(line, str) else DataError(source, message, line)
    skipped: Counter = Counter()
    examples: list[str] = []
    kept: list[tuple[str, str, list[str]]] = []
    seen = 0

    def skip(line: int | str, reason: str, detail: str) -> None:
        skipped[reason] += 1
        if len(examples) < 100:
            examples.append(f"{line if isinstance(line, str) else f'{source}:{line}'}: {detail}")

    for line, row in records:
        seen += 1
        problems = {name: _problem(row, name) for name in (anchor, positive)}
        malformed = [(n, why) for n, why in problems.items() if why and why.startswith("malformed")]
        if malformed:
            skip(line, f"malformed {malformed[0][0]}", malformed[0][1])
            continue
        if any(problems.values()):
            skip(line, "empty anchor or positive", "empty " + " and ".join(n for n, w in problems.items() if w))
            continue
        a, p = row[anchor].strip(), row[positive].strip()
        negs: list[str] = []
        if negative is not None:
            value = row.get(negative)
            found = _negatives(value)
            if found is None:
                if value is not None and not isinstance(value, (str, list, tuple)):
                    skip(line, f"malformed {negative}", f"malformed: {negative!r} is {type(value).__name__}, "
                         "not text or a list of texts")
                else:
                    skip(line, "no usable negative", f"no usable {negative!r}")
                continue
            negs = found
        kept.append((a, p, negs))
        if limit is not None and len(kept) >= limit:
            break
    for example in examples[:_EXAMPLES]:
        logger.warning("skipped %s", example)
    if not kept:
        reasons = ", ".join(f"{n} {r}" for r, n in skipped.items()) or "the data is empty"
        first = f"; first: {examples[0]}" if examples else ""
        raise DataError(source, f"no usable training rows ({reasons}){first}")
    bad = sum(skipped.values())
    if bad > max_bad_share * seen:
        reasons = ", ".join(f"{n} {r}" for r, n in skipped.items())
        raise DataError(source, f"{bad} of {seen} rows unusable ({reasons}), more than the {max_bad_share:.0%} "
                        f"allowed (max_bad_rows); first: {examples[0]}")
    k = min(len(n) for _, _, n in kept)
    truncated = sum(1 for _, _, n in kept if len(n) > k)
    if truncated:
        skipped[f"negatives beyond the first {k} dropped (rows)"] = truncated
    columns: dict[str, list[str]] = {"anchor": [a for a, _, _ in kept], "positive": [p for _, p, _ in kept]}
    for index in range(k):
        columns[f"negative_{index + 1}"] = [n[index] for _, _, n in kept]
    if skipped:
        logger.warning("%s: %s", source, dict(skipped))
    return LoadedRows(columns=columns, source=source, skipped=skipped, examples=examples)


def load_training_rows(
    data: str | Path,
    anchor: str = "anchor",
    positive: str = "positive",
    negative: str | None = "negative",
    *,
    split: str = "train",
    limit: int | None = None,
    max_bad_share: float = MAX_BAD_SHARE,
) -> LoadedRows:
    """Load training rows from a file path, a synthesis output folder, or a Hugging Face dataset reference
    (``hf:ID[@REV][?split=..&streaming=..]``, see `synthembed.io.hf_datasets`)."""
    if isinstance(data, str) and data.startswith("hf:"):
        from synthembed.io.hf_datasets import training_records

        given = {"anchor": anchor, "positive": positive, "negative": negative}
        override = {k: v for k, v in given.items() if v != k}  # what differs from the defaults overrides the schema
        records, has_negative, source = training_records(data, override, default_split=split, limit=limit)
        return rows_from_records(records, source, negative="negative" if has_negative else None, limit=limit)
    path = Path(data).expanduser()
    if path.is_dir() and ((path / "records.jsonl").is_file() or (path / "records").is_dir()):
        records = [(f"{file}:{line}", row) for file in record_files(path) for line, row in read_records(file)]
        return rows_from_records(records, str(path), anchor, positive, negative, limit, max_bad_share)
    if path.is_file() or path.suffix.lower() in FILE_SUFFIXES:
        wanted = [c for c in (anchor, positive, negative) if c is not None]
        required = wanted if path.suffix.lower() in (".tsv", ".csv", ".txt") else ()
        records = read_records(path, required)
        return rows_from_records(records, str(path), anchor, positive, negative, limit, max_bad_share)
    return _rows_from_hf(str(data), split, anchor, positive, negative, limit, max_bad_share)


def concatenate_rows(parts: list[LoadedRows]) -> LoadedRows:
    """Several sources as one training set; every row keeps the fewest negatives any source has (counted)."""
    if len(parts) == 1:
        return parts[0]
    k = min(len(part.columns) - 2 for part in parts)
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(k)}}
    skipped: Counter = Counter()
    examples: list[str] = []
    for part in parts:
        for name in columns:
            columns[name].extend(part.columns[name])
        skipped.update(part.skipped)
        examples.extend(part.examples)
        if len(part.columns) - 2 > k:
            skipped[f"{part.source}: negatives beyond the first {k} dropped to match the other sources (rows)"] += len(part)
    return LoadedRows(columns=columns, source=" + ".join(part.source for part in parts), skipped=skipped,
                      examples=examples)


def _rows_from_hf(
    reference: str, split: str, anchor: str, positive: str, negative: str | None, limit: int | None,
    max_bad_share: float = MAX_BAD_SHARE,
) -> LoadedRows:
    import datasets

    try:
        if Path(reference).is_dir():
            loaded = datasets.load_from_disk(reference)
        else:
            loaded = datasets.load_dataset(reference, split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        raise DataError(reference, f"not a data file and not a loadable Hugging Face dataset: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(reference, f"no split {split!r}; the dataset has {sorted(loaded)}")
        loaded = loaded[split]
    missing = [c for c in (anchor, positive, negative) if c is not None and c not in loaded.column_names]
    if missing:
        raise DataError(reference, f"missing column(s) {missing}; the dataset has {loaded.column_names}")
    records = [(index + 1, row) for index, row in enumerate(loaded)]
    return rows_from_records(records, f"{reference}[{split}]", anchor, positive, negative, limit, max_bad_share)
