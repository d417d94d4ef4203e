"""The item table of an index bundle: FAISS id -> external id, label, source, metadata.

On disk it is ``items.sqlite`` with one table::

    items(faiss_id INTEGER PRIMARY KEY, external_id TEXT UNIQUE, label TEXT, source TEXT, metadata JSON)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SCHEMA = ("CREATE TABLE items (faiss_id INTEGER PRIMARY KEY, external_id TEXT NOT NULL UNIQUE, "
          "label TEXT NOT NULL, source TEXT NOT NULL, metadata JSON NOT NULL)")
_LOOKUP_CHUNK = 900  # stays under SQLite's historical limit of 999 bound parameters


class ItemTableError(ValueError):
    """The item table is malformed, or the records given for it are (duplicate ids, bad metadata)."""


@dataclass(frozen=True)
class ItemRecord:
    """One indexed item as stored beside its vector; ``metadata`` must be JSON-serialisable."""

    external_id: str
    label: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


class ItemLookup(Protocol):
    """Read access to the records of an index, by FAISS id (0..n-1)."""

    def __len__(self) -> int: ...

    def get_many(self, ids: Sequence[int]) -> dict[int, ItemRecord]: ...

    def iter_records(self) -> Iterator[ItemRecord]: ...


def check_unique_ids(records: Sequence[ItemRecord]) -> None:
    """Raise ItemTableError naming a duplicate external id, if any."""
    seen: set[str] = set()
    for record in records:
        if record.external_id in seen:
            raise ItemTableError(f"external id {record.external_id!r} occurs more than once")
        seen.add(record.external_id)


class MemoryItems:
    """Records held in a list (a freshly built index); FAISS id = position."""

    def __init__(self, records: Sequence[ItemRecord]) -> None:
        check_unique_ids(records)
        self._records = list(records)

    def __len__(self) -> int:
        return len(self._records)

    def get_many(self, ids: Sequence[int]) -> dict[int, ItemRecord]:
        return {i: self._records[i] for i in ids if 0 <= i < len(self._records)}

    def iter_records(self) -> Iterator[ItemRecord]:
        return iter(self._records)


def write_items(path: Path, records: Iterable[ItemRecord]) -> int:
    """Write records (FAISS id = position) to a new SQLite file at ``path``; returns the count."""
    if Path(path).exists():
        raise ItemTableError(f"{path} already exists")
    conn = sqlite3.connect(path)
    try:
        conn.execute(SCHEMA)
        rows = ((i, r.external_id, r.label, r.source, json.dumps(r.metadata, sort_keys=True))
                for i, r in enumerate(records))
        try:
            with conn:
                conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            raise ItemTableError(f"duplicate external id in the records: {exc}") from exc
        except TypeError as exc:
            raise ItemTableError(f"metadata is not JSON-serialisable: {exc}") from exc
        (count,) = conn.execute("SELECT COUNT(*) FROM items").fetchone()
    finally:
        conn.close()
    return int(count)


def _record(row: tuple[Any, ...]) -> ItemRecord:
    return ItemRecord(external_id=row[1], label=row[2], source=row[3], metadata=json.loads(row[4]))


class SqliteItems:
    """Read-only view of a published ``items.sqlite`` (opened immutable; safe to share between threads)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise ItemTableError(f"item table {path} is missing")
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        try:
            (self._count,) = self._conn.execute("SELECT COUNT(*) FROM items").fetchone()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ItemTableError(f"{path} is not a valid item table: {exc}") from exc

    def __len__(self) -> int:
        return int(self._count)

    def get_many(self, ids: Sequence[int]) -> dict[int, ItemRecord]:
        wanted = sorted({int(i) for i in ids})
        found: dict[int, ItemRecord] = {}
        with self._lock:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start:start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT * FROM items WHERE faiss_id IN ({marks})"  # only "?" marks are formatted in
                for row in self._conn.execute(query, chunk):
                    found[int(row[0])] = _record(row)
        return found

    def iter_records(self) -> Iterator[ItemRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM items ORDER BY faiss_id").fetchall()
        return (_record(row) for row in rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
