"""Input rows for synthesis: a text file, a TSV/CSV/JSONL column, or a Hugging Face dataset column.

Every row gets a stable id from its position in the source (``L<line>`` for files, ``R<index>`` for
datasets, or the source's own ``id`` field when a table has one), so a resumed run recognises the
rows it already did. Empty texts, texts longer than ``max_chars`` and (by default) repeated texts are
skipped and counted in `InputSet.skipped`; invalid UTF-8, a missing column or a missing file raise a
`DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthembed.errors import DataError
from synthembed.io.tables import read_jsonl, read_delimited, read_text_lines

__all__ = ["InputRow", "InputSet", "read_dataset_column", "read_input_file", "rows_from_texts"]

DEFAULT_MAX_CHARS = 2000  # a sentence-embedding anchor is a sentence or a short passage


@dataclass(frozen=True)
class InputRow:
    """One unit of work: a stable ``id``, its ``text``, where it came from, and any other fields."""

    id: str
    text: str
    source: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class InputSet:
    """Rows to process plus counts of input rows skipped, by reason."""

    rows: list[InputRow]
    skipped: Counter = field(default_factory=Counter)
    # (rows kept before the skip, reason) per skipped input, so `head` counts only the skips it covers
    skip_log: list[tuple[int, str]] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[InputRow]:
        return iter(self.rows)

    def head(self, limit: int | None) -> InputSet:
        """The first `limit` rows (all when None)."""
        if limit is None:
            return self
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit >= len(self.rows):
            return self
        log = [(kept, reason) for kept, reason in self.skip_log if kept < limit]
        return InputSet(self.rows[:limit], Counter(reason for _, reason in log), log)


def _clean_rows(
    items: Iterable[tuple[str, str, str, dict[str, Any]]], *, dedupe: bool, max_chars: int
) -> InputSet:
    """(id, text, source, fields) tuples -> InputSet, skipping empty/over-long/duplicate texts."""
    rows: list[InputRow] = []
    log: list[tuple[int, str]] = []
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    for row_id, text, source, fields in items:
        text = " ".join(text.split())  # one line, single spaces
        if not text:
            log.append((len(rows), "empty"))
            continue
        if len(text) > max_chars:
            log.append((len(rows), "too_long"))
            continue
        if dedupe:
            if text in seen_texts:
                log.append((len(rows), "duplicate_input"))
                continue
            seen_texts.add(text)
        if row_id in seen_ids:
            raise DataError(source.rsplit(":", 1)[0], f"duplicate row id {row_id!r}", _line_of(source))
        seen_ids.add(row_id)
        rows.append(InputRow(row_id, text, source, fields))
    return InputSet(rows, Counter(reason for _, reason in log), log)


def _line_of(source: str) -> int | None:
    tail = source.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def read_input_file(
    path: str | Path, column: str | None = None, *, dedupe: bool = True, max_chars: int = DEFAULT_MAX_CHARS
) -> InputSet:
    """Read rows from a text file (one per line; `column` must be None) or a .tsv/.csv/.jsonl `column`.

    Tables default to the column ``text``; a table's ``id`` column, if present, gives the row ids.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv", ".jsonl", ".json", ".ndjson"):
        return _read_table(path, column or "text", dedupe=dedupe, max_chars=max_chars)
    if column is not None:
        raise DataError(path, f"--column {column!r} needs a .tsv, .csv or .jsonl file; this is read as plain text")
    lines = read_text_lines(path, skip_empty=False)
    items = ((f"L{n}", text, f"{path}:{n}", {}) for n, text in lines)
    result = _clean_rows(items, dedupe=dedupe, max_chars=max_chars)
    if not result.rows:
        raise DataError(path, "no usable lines (all empty, too long or repeated)")
    return result


def _read_table(path: Path, column: str, *, dedupe: bool, max_chars: int) -> InputSet:
    if path.suffix.lower() in (".tsv", ".csv"):
        csv.field_size_limit(sys.maxsize >> 1)  # a long field is skipped as too_long, not a csv.Error
        table = read_delimited(path, [column])
    else:
        table = read_jsonl(path)
        for number, row in table:
            if column not in row:
                raise DataError(path, f"missing field {column!r}; the record has {sorted(row)}", number)
    items = []
    for number, row in table:
        value = row[column]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise DataError(path, f"field {column!r} must be a string, found {type(value).__name__}", number)
        row_id = str(row["id"]) if row.get("id") not in (None, "") else f"L{number}"
        fields = {k: v for k, v in row.items() if k != column}
        items.append((row_id, value, f"{path}:{number}", fields))
    result = _clean_rows(items, dedupe=dedupe, max_chars=max_chars)
    if not result.rows:
        raise DataError(path, f"no usable rows in column {column!r}")
    return result


def read_dataset_column(
    name: str,
    column: str,
    *,
    split: str = "train",
    config: str | None = None,
    dedupe: bool = True,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> InputSet:
    """Rows from a Hugging Face dataset column (hub name or local folder saved with save_to_disk/load_dataset)."""
    import datasets

    try:
        if Path(name).is_dir() and (Path(name) / "dataset_info.json").exists():
            data = datasets.load_from_disk(name)
            if isinstance(data, datasets.DatasetDict):
                data = data[split]
        else:
            data = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # datasets raises many types; name the dataset in one clear error
        raise DataError(name, f"cannot load dataset (split {split!r}): {exc}") from None
    if column not in data.column_names:
        raise DataError(name, f"missing column {column!r}; the dataset has {data.column_names}")
    items = (
        (f"R{i}", value if isinstance(value, str) else "", f"{name}[{split}]:{i}", {})
        for i, value in enumerate(data[column])
    )
    return _clean_rows(items, dedupe=dedupe, max_chars=max_chars)


def rows_from_texts(texts: Iterable[str], *, prefix: str = "R", source: str = "memory") -> InputSet:
    """Rows from an in-memory list (ids ``<prefix><index>``); for the Python API and tests."""
    items = ((f"{prefix}{i}", t, f"{source}:{i}", {}) for i, t in enumerate(texts))
    return _clean_rows(items, dedupe=False, max_chars=sys.maxsize)
