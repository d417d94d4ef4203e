"""The item table of an index bundle: FAISS id -> external id, label, source, metadata.

Published tables are immutable; ``OverlayItems`` layers upserts and deletes over one (index.changes keeps
those changes durable beside the collection).

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
# label filters ("search only label X") look items up by label: without this index each filtered query
# scans the whole table (about 5 ms of a 7.7 ms filtered search on 5,784 items, bench/vector_dbs.py)
LABEL_INDEX = "CREATE INDEX items_label ON items (label)"
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

    def find(self, external_id: str) -> int | None: ...

    def matching(self, label: str | None, metadata: dict[str, Any]) -> list[int]: ...

    def page(self, after: str | None, limit: int) -> list[tuple[int, ItemRecord]]: ...


def metadata_matches(record: ItemRecord, label: str | None, metadata: dict[str, Any]) -> bool:
    """Whether ``record`` has ``label`` (if given) and every ``metadata`` field equal to the value given."""
    return (label is None or record.label == label) and all(
        key in record.metadata and record.metadata[key] == value for key, value in metadata.items())


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

    def find(self, external_id: str) -> int | None:
        return next((i for i, r in enumerate(self._records) if r.external_id == external_id), None)

    def matching(self, label: str | None, metadata: dict[str, Any]) -> list[int]:
        return [i for i, r in enumerate(self._records) if metadata_matches(r, label, metadata)]

    def page(self, after: str | None, limit: int) -> list[tuple[int, ItemRecord]]:
        """Up to ``limit`` (FAISS id, record) pairs with external ids after ``after``, by external id."""
        rows = [(i, r) for i, r in enumerate(self._records) if after is None or r.external_id > after]
        return sorted(rows, key=lambda row: row[1].external_id)[:limit]


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
                conn.execute(LABEL_INDEX)
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

    def find(self, external_id: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT faiss_id FROM items WHERE external_id = ?", (external_id,)).fetchone()
        return None if row is None else int(row[0])

    def matching(self, label: str | None, metadata: dict[str, Any]) -> list[int]:
        """FAISS ids of items with ``label`` (if given) and every metadata field equal to the value given."""
        clauses, params = ["1 = 1"], []
        if label is not None:
            clauses.append("label = ?")
            params.append(label)
        for key, value in metadata.items():
            clauses.append("json_extract(metadata, ?) = ?")  # the path is a bound parameter too
            params += [f'$."{key}"' if key.replace("_", "").replace("-", "").isalnum() else "$.__invalid__", value]
        query = f"SELECT faiss_id FROM items WHERE {' AND '.join(clauses)}"  # only fixed clauses are formatted in
        with self._lock:
            return [int(row[0]) for row in self._conn.execute(query, params)]

    def page(self, after: str | None, limit: int) -> list[tuple[int, ItemRecord]]:
        """Up to ``limit`` (FAISS id, record) pairs with external ids after ``after``, by external id
        (SQLite's binary order of UTF-8 text is Python's order of str)."""
        where, params = ("", [limit]) if after is None else ("WHERE external_id > ?", [after, limit])
        query = f"SELECT * FROM items {where} ORDER BY external_id LIMIT ?"  # only a fixed clause is formatted in
        with self._lock:
            return [(int(row[0]), _record(row)) for row in self._conn.execute(query, params)]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class OverlayItems:
    """A published item table plus in-memory upserts and deletes (FAISS ids of new items follow the base's)."""

    def __init__(self, base: ItemLookup) -> None:
        self.base = base
        self.added: dict[int, ItemRecord] = {}
        self._added_ids: dict[str, int] = {}
        self.deleted: set[int] = set()  # base ids
        self.next_id = len(base)

    def __len__(self) -> int:
        return len(self.base) - len(self.deleted) + len(self.added)

    def get_many(self, ids: Sequence[int]) -> dict[int, ItemRecord]:
        found = {i: self.added[i] for i in ids if i in self.added}
        base_ids = [i for i in ids if i not in self.added and i not in self.deleted]
        return found | (self.base.get_many(base_ids) if base_ids else {})

    def iter_records(self) -> Iterator[ItemRecord]:
        live = [r for i, r in enumerate(self.base.iter_records()) if i not in self.deleted]
        return iter(live + list(self.added.values()))

    def find(self, external_id: str) -> int | None:
        if external_id in self._added_ids:
            return self._added_ids[external_id]
        found = self.base.find(external_id)
        return None if found is None or found in self.deleted else found

    def matching(self, label: str | None, metadata: dict[str, Any]) -> list[int]:
        base = [i for i in self.base.matching(label, metadata) if i not in self.deleted]
        return base + [i for i, r in self.added.items() if metadata_matches(r, label, metadata)]

    def page(self, after: str | None, limit: int) -> list[tuple[int, ItemRecord]]:
        """Up to ``limit`` live (FAISS id, record) pairs with external ids after ``after``, by external id."""
        base: list[tuple[int, ItemRecord]] = []
        cursor = after
        while len(base) < limit:  # deleted rows are skipped, so the base table may need several reads
            rows = self.base.page(cursor, limit)
            base += [(i, r) for i, r in rows if i not in self.deleted]
            if len(rows) < limit:
                break
            cursor = rows[-1][1].external_id
        added = [(i, r) for i, r in self.added.items() if after is None or r.external_id > after]
        return sorted(base[:limit] + added, key=lambda row: row[1].external_id)[:limit]

    def add(self, faiss_id: int, record: ItemRecord) -> None:
        self.added[faiss_id] = record
        self._added_ids[record.external_id] = faiss_id
        self.next_id = max(self.next_id, faiss_id + 1)

    def remove(self, faiss_id: int) -> None:
        record = self.added.pop(faiss_id, None)
        if record is not None:
            self._added_ids.pop(record.external_id, None)
        elif faiss_id < len(self.base):
            self.deleted.add(faiss_id)
