"""Training rows from a file or a Hugging Face dataset, as a `datasets.Dataset` of text columns.

Output columns: ``anchor``, ``positive`` and ``negative_1 .. negative_k`` (k >= 0), the order
`InfoNCELoss` expects. Sources:

- our JSONL records ``{"id", "anchor", "positive", "negative"}`` where ``negative`` is a string or a
  list of strings (graded negatives), and any JSONL/TSV/CSV file with named columns;
- a Hugging Face dataset: a ``save_to_disk`` folder or a hub name (``dataset_split`` picks the split);
- ``hf:`` references to `datasets.load_dataset` with the published datasets' column mappings
  (`synthembed.io.hf_datasets`).

Rows with an empty/missing anchor or positive (or, when negatives are used, no negative) are
skipped and counted by reason; when a row's negative list is longer than the shortest one, only the
first k (k = the fewest negatives any usable row has) are kept, and that is counted too. No usable row,
or a missing column, is a `DataError` naming the file (and line).
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

FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".tsv", ".csv", ".txt")


@dataclass
class LoadedRows:
    """Usable rows as column lists, plus what was skipped and why."""

    columns: dict[str, list[str]]
    source: str
    skipped: Counter = field(default_factory=Counter)

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


def rows_from_records(
    records: list[tuple[int, dict[str, Any]]],
    source: str,
    anchor: str = "anchor",
    positive: str = "positive",
    negative: str | None = "negative",
    limit: int | None = None,
) -> LoadedRows:
    """Turn (line, record) pairs into training columns; see the module docstring for the rules."""
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
            raise DataError(
                source,
                f"missing column(s) {missing}; the data has {sorted(present)} "
                "(set anchor_column/positive_column/negative_column, or negative_column: null for pairs)",
                line,
            )
    skipped: Counter = Counter()
    kept: list[tuple[str, str, list[str]]] = []
    for _, row in records:
        a, p = _text(row.get(anchor)), _text(row.get(positive))
        if a is None or p is None:
            skipped["empty anchor or positive"] += 1
            continue
        negs: list[str] = []
        if negative is not None:
            found = _negatives(row.get(negative))
            if found is None:
                skipped["no usable negative"] += 1
                continue
            negs = found
        kept.append((a, p, negs))
        if limit is not None and len(kept) >= limit:
            break
    if not kept:
        reasons = ", ".join(f"{n} {r}" for r, n in skipped.items()) or "the data is empty"
        raise DataError(source, f"no usable training rows ({reasons})")
    k = min(len(n) for _, _, n in kept)
    truncated = sum(1 for _, _, n in kept if len(n) > k)
    if truncated:
        skipped[f"negatives beyond the first {k} dropped (rows)"] = truncated
    columns: dict[str, list[str]] = {"anchor": [a for a, _, _ in kept], "positive": [p for _, p, _ in kept]}
    for index in range(k):
        columns[f"negative_{index + 1}"] = [n[index] for _, _, n in kept]
    if skipped:
        logger.warning("%s: %s", source, dict(skipped))
    return LoadedRows(columns=columns, source=source, skipped=skipped)


def load_training_rows(
    data: str | Path,
    anchor: str = "anchor",
    positive: str = "positive",
    negative: str | None = "negative",
    *,
    split: str = "train",
    limit: int | None = None,
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
        records = [pair for file in record_files(path) for pair in read_records(file)]
        return rows_from_records(records, str(path), anchor, positive, negative, limit)
    if path.is_file() or path.suffix.lower() in FILE_SUFFIXES:
        wanted = [c for c in (anchor, positive, negative) if c is not None]
        required = wanted if path.suffix.lower() in (".tsv", ".csv", ".txt") else ()
        records = read_records(path, required)
        return rows_from_records(records, str(path), anchor, positive, negative, limit)
    return _rows_from_hf(str(data), split, anchor, positive, negative, limit)


def concatenate_rows(parts: list[LoadedRows]) -> LoadedRows:
    """Several sources as one training set; every row keeps the fewest negatives any source has (counted)."""
    if len(parts) == 1:
        return parts[0]
    k = min(len(part.columns) - 2 for part in parts)
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(k)}}
    skipped: Counter = Counter()
    for part in parts:
        for name in columns:
            columns[name].extend(part.columns[name])
        skipped.update(part.skipped)
        if len(part.columns) - 2 > k:
            skipped[f"{part.source}: negatives beyond the first {k} dropped to match the other sources (rows)"] += len(part)
    return LoadedRows(columns=columns, source=" + ".join(part.source for part in parts), skipped=skipped)


def _rows_from_hf(
    reference: str, split: str, anchor: str, positive: str, negative: str | None, limit: int | None
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
    return rows_from_records(records, f"{reference}[{split}]", anchor, positive, negative, limit)
