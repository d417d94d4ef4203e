"""The change log of a collection: upserts and deletes made on top of its live version, durable in SQLite.

One row per change, in order (``seq``), tagged with the version it was made on (``base_version``). A
change is written here before it is applied in memory, so an answer never reports a change that a
restart would lose; a write that fails raises a DurableWriteError (busy, full, other) and nothing changes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arcsearch.index.durable import DEFAULT_BUSY_TIMEOUT_S, open_database, sqlite_failure
from arcsearch.index.items import ItemRecord
from arcsearch.index.store import IndexStore

logger = logging.getLogger(__name__)

CHANGES_SCHEMA = ("CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                  "base_version TEXT NOT NULL, op TEXT NOT NULL, external_id TEXT NOT NULL, faiss_id INTEGER, "
                  "label TEXT, source TEXT, metadata JSON, vector BLOB);")
COLUMNS = "op, external_id, faiss_id, label, source, metadata, vector"


@dataclass(frozen=True)
class Change:
    """One upsert (with its record, FAISS id and float32 vector) or delete, made on top of ``base_version``.

    ``faiss_id`` None: the id the item gets when the change is replayed (the next free one)."""

    op: str
    external_id: str
    faiss_id: int | None = None
    record: ItemRecord | None = None
    vector: bytes | None = None


class ChangeLog:
    """Durable upserts and deletes of a collection since its live version was published (SQLite, WAL).

    Every method is one SQL statement, hence one transaction: it happens whole or not at all. A write
    waits up to ``busy_timeout_s`` for another connection's lock, then raises StorageBusyError.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._what = f"the change log {self.path.parent.name}/{self.path.name}"
        self._conn = open_database(self.path, schema=CHANGES_SCHEMA, busy_timeout_s=busy_timeout_s, what=self._what)
        self._lock = threading.Lock()

    @contextmanager
    def _statement(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise sqlite_failure(exc, self._what) from exc

    def append(self, base_version: str, change: Change) -> int:
        """Write ``change`` (durable when this returns); returns its sequence number."""
        r = change.record
        with self._statement() as conn:
            cursor = conn.execute(
                f"INSERT INTO changes (base_version, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (base_version, change.op, change.external_id, change.faiss_id, r.label if r else None,
                 r.source if r else None, json.dumps(r.metadata, sort_keys=True) if r else None, change.vector))
            return int(cursor.lastrowid or 0)

    def retract(self, seq: int) -> None:
        """Remove the change ``seq`` (one that could not be applied after all)."""
        with self._statement() as conn:
            conn.execute("DELETE FROM changes WHERE seq = ?", (seq,))

    def last_seq(self) -> int:
        """The sequence number of the newest change (0 if none); every later change gets a larger one."""
        with self._statement() as conn:
            (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
        return int(seq)

    def rebase(self, from_version: str, after_seq: int, to_version: str) -> int:
        """Copy the changes made on ``from_version`` after ``after_seq`` onto ``to_version`` (in order, with
        FAISS ids left to the replay); returns how many. Made before ``to_version`` goes live, so that a
        change accepted while a re-index ran survives the switch even if the process dies right after it."""
        with self._statement() as conn:
            cursor = conn.execute(
                f"INSERT INTO changes (base_version, {COLUMNS}) SELECT ?, op, external_id, NULL, label, source, "
                "metadata, vector FROM changes WHERE base_version = ? AND seq > ? ORDER BY seq",
                (to_version, from_version, after_seq))
            return int(cursor.rowcount)

    def replay(self, base_version: str) -> list[Change]:
        """The changes made on ``base_version``, oldest first."""
        with self._statement() as conn:
            rows = conn.execute(f"SELECT {COLUMNS} FROM changes WHERE base_version = ? ORDER BY seq",
                                (base_version,)).fetchall()
        return [Change(op, ext, fid, ItemRecord(ext, label, source, json.loads(meta)) if op == "upsert" else None, vec)
                for op, ext, fid, label, source, meta, vec in rows]

    def discard_except(self, base_version: str) -> None:
        """Forget changes made on top of other versions (a re-index replaced them)."""
        with self._statement() as conn:
            conn.execute("DELETE FROM changes WHERE base_version != ?", (base_version,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def replay_onto(store: IndexStore, changes: ChangeLog, version: str) -> int:
    """Re-apply to ``store`` (the bundle of ``version``) the upserts and deletes logged on top of it;
    returns how many."""
    store.enable_mutations()
    replayed = changes.replay(version)
    for change in replayed:
        if change.op == "upsert" and change.record is not None and change.vector is not None:
            store.upsert(change.record, np.frombuffer(change.vector, np.float32), faiss_id=change.faiss_id)
        elif change.op == "delete":
            store.delete(change.external_id)
    if replayed:
        logger.info("replayed %d item changes on version %s", len(replayed), version)
    store.compact()  # HNSW: drop the tombstones the replay left (no-op for other index types)
    return len(replayed)
