"""Rows of a tabular corpus file: CSV with a header, JSON Lines, or Parquet, read one row at a time.

Rows are dicts of column -> value. CSV values are strings; JSONL and Parquet keep their types (a Parquet
null becomes a missing key, so that optional columns work the same way in all three formats).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
TABLE_SUFFIXES = CSV_SUFFIXES | JSONL_SUFFIXES | PARQUET_SUFFIXES
PARQUET_BATCH_ROWS = 65_536

Row = tuple[int, dict[str, Any] | None, str]  # (row number from 1, the row or None, why it is None)


class TableError(ValueError):
    """A table file cannot be read at all (missing, unknown format, unreadable header)."""


def is_table(path: Path) -> bool:
    """Whether ``path`` names a file in one of the table formats (by its suffix)."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def table_columns(path: Path) -> list[str] | None:
    """The column names of a CSV or Parquet file; None for JSONL, whose rows may each have other keys."""
    path = _checked(path)
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            return list(csv.DictReader(handle).fieldnames or [])
    if suffix in PARQUET_SUFFIXES:
        return list(_parquet_file(path).schema_arrow.names)
    return None


def table_rows(path: Path) -> Iterator[Row]:
    """Every non-blank row of ``path``, streamed; a JSONL line that is not a JSON object is yielded as
    ``(number, None, reason)`` so that a caller decides whether one bad row fails the whole file."""
    path = _checked(path)
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        yield from _csv_rows(path)
    elif suffix in PARQUET_SUFFIXES:
        yield from _parquet_rows(path)
    else:
        yield from _jsonl_rows(path)


def _checked(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path} does not exist or is not a file")
    if not is_table(path):
        raise TableError(f"{path}: expected a .csv, .jsonl or .parquet file")
    return path


def _csv_rows(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=1):
            yield number, dict(row), ""


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = (line for line in handle if line.strip())  # blank lines are not rows and take no number
        for number, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                yield number, None, f"not JSON: {exc}"
                continue
            yield (number, row, "") if isinstance(row, dict) else (number, None, "not a JSON object")


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq  # imported here: only Parquet corpora need pyarrow loaded

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses for a file that is no Parquet
        raise TableError(f"{path} is not a readable Parquet file: {exc}") from None


def _parquet_rows(path: Path) -> Iterator[Row]:
    number = 0
    for batch in _parquet_file(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            number += 1
            yield number, {key: value for key, value in row.items() if value is not None}, ""
