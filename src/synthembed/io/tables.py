"""Read the tabular formats SynthEmbed accepts (TSV, CSV, JSONL, plain text) with clear errors.

Every error names the file and the 1-based line, so a user can open the file and fix it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from synthembed.errors import DataError


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text without newline), raising DataError on invalid UTF-8."""
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a directory, expected a file")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(path, f"invalid UTF-8 at byte {exc.start} of the line", number) from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield number, text.rstrip("\r\n")


def read_text_lines(path: str | Path, *, skip_empty: bool = True) -> list[tuple[int, str]]:
    """Read a plain text file, one item a line. Returns (line number, stripped text) pairs."""
    path = Path(path)
    out = []
    for number, text in _decoded_lines(path):
        text = text.strip()
        if skip_empty and not text:
            continue
        out.append((number, text))
    return out


def read_delimited(
    path: str | Path,
    required: Sequence[str] = (),
    *,
    delimiter: str | None = None,
) -> list[tuple[int, dict[str, str]]]:
    """Read a TSV/CSV file with a header line; return (line number, row dict) pairs.

    TSV is read without quoting (the format of ../shared/data); CSV with standard quoting.
    Blank lines are skipped. A short or long row, or a missing required column, is a DataError.
    """
    path = Path(path)
    if delimiter is None:
        delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    lines = iter(_decoded_lines(path))
    try:
        header_line, header_text = next(lines)
    except StopIteration:
        raise DataError(path, "empty file, expected a header line") from None
    header = next(csv.reader([header_text], delimiter=delimiter, quoting=_quoting(delimiter)))
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; the header has {header}", header_line)
    rows = []
    for number, text in lines:
        if not text.strip():
            continue
        fields = next(csv.reader([text], delimiter=delimiter, quoting=_quoting(delimiter)))
        if len(fields) != len(header):
            raise DataError(path, f"expected {len(header)} fields ({header}), found {len(fields)}", number)
        rows.append((number, dict(zip(header, fields))))
    return rows


def _quoting(delimiter: str) -> int:
    return csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a JSON-lines file of objects; blank lines are skipped, anything else malformed is an error."""
    path = Path(path)
    rows = []
    for number, text in _decoded_lines(path):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", number) from None
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, found {type(obj).__name__}", number)
        rows.append((number, obj))
    return rows


def read_records(path: str | Path, required: Sequence[str] = ()) -> list[tuple[int, dict[str, Any]]]:
    """Read TSV, CSV or JSONL by extension, checking that `required` fields are present."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows = read_jsonl(path)
        for number, row in rows:
            missing = [c for c in required if c not in row]
            if missing:
                raise DataError(path, f"missing field(s) {missing}; the record has {sorted(row)}", number)
        return rows
    if suffix in (".tsv", ".csv", ".txt"):
        return read_delimited(path, required)
    raise DataError(path, f"unknown file type {suffix!r}; expected .tsv, .csv or .jsonl")
