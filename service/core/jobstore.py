"""Re-index jobs in SQLite (``<collections_dir>/jobs.sqlite`` by default), so they survive a restart.

Two tables: ``jobs`` (one row per job: state, progress, result) and ``job_failures`` (items that could
not be indexed, with the reason). ``mark_interrupted`` runs at startup: a job still ``queued`` or
``running`` in the file belonged to a process that died, so it becomes ``interrupted`` (one process
serves a collections folder: index.serving_lock).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arcsearch.index.durable import DEFAULT_BUSY_TIMEOUT_S, DurableWriteError, open_database, sqlite_failure
from arcsearch.service.core.errors import (
    DomainError,
    JobNotFoundError,
    JobsUnavailableError,
    StorageBusyError,
    storage_error,
)
from arcsearch.service.core.records import JobFailureRecord, JobProgressRecord, JobRecord, LastReindexRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, collection TEXT NOT NULL, source TEXT NOT NULL, status TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    error TEXT, version TEXT, num_items INTEGER, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    resumed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS job_failures (
    job_id TEXT NOT NULL, item_id TEXT NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_failures_by_job ON job_failures (job_id);
"""
COLUMNS = ("job_id", "collection", "source", "status", "done", "total", "failed", "error", "version",
           "num_items", "created_at", "started_at", "finished_at", "resumed")
UPDATABLE = set(COLUMNS) - {"job_id", "collection", "source", "created_at"}
FINISHED = "('succeeded', 'failed', 'interrupted', 'cancelled')"
MAX_REPORTED_FAILURES = 100
INTERRUPTED_ERROR = "the server stopped while this job ran; the previous index version is still served"


def now() -> str:
    return datetime.now(UTC).isoformat()


def rate(done: int, started_at: str | None, finished_at: str | None) -> float | None:
    """Items per second between the start and the end (or now); None before the job starts (``done``: the items
    this run embedded)."""
    if started_at is None:
        return None
    end = datetime.fromisoformat(finished_at) if finished_at else datetime.now(UTC)
    elapsed_s = (end - datetime.fromisoformat(started_at)).total_seconds()
    return round(done / elapsed_s, 2) if elapsed_s > 0 else None


class JobStore:
    """Thread-safe access to the jobs file (one connection, one lock; WAL, synchronous=FULL).

    Every write is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, rolled back on any error, so a
    failed write leaves nothing behind and the connection usable. A write waits up to ``busy_timeout_s``
    for another connection's lock, then raises StorageBusyError (retry after ``busy_timeout_s``); a full disk
    raises InsufficientStorageError; a damaged file JobsUnavailableError.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        try:
            self._conn = open_database(path, schema=SCHEMA, busy_timeout_s=busy_timeout_s, what=self._what)
            _add_resumed_column(self._conn)
        except DurableWriteError as exc:
            raise self._storage_error(exc) from exc
        self._lock = threading.Lock()

    @property
    def _what(self) -> str:
        return f"the jobs database {self.path.name}"

    def _storage_error(self, exc: DurableWriteError) -> DomainError:
        return storage_error(exc, retry_after_s=self.busy_timeout_s, other=JobsUnavailableError)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock; an SQLite error rolls back whatever is open and becomes a DomainError."""
        with self._lock:
            try:
                yield self._conn
            except BaseException as exc:
                if self._conn.in_transaction:
                    with suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._storage_error(sqlite_failure(exc, self._what)) from exc
                raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed if the block finishes, rolled back on any error."""
        with self._read() as conn:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")

    def create(self, job_id: str, collection: str, source: str, *, keep: int | None = None) -> None:
        """Record a queued job; with ``keep``, forget all but the newest ``keep`` finished jobs (one transaction)."""
        with self._write() as conn:
            conn.execute("INSERT INTO jobs (job_id, collection, source, status, created_at) VALUES (?, ?, ?, ?, ?)",
                         (job_id, collection, source, "queued", now()))
            if keep is not None:
                _prune(conn, keep)

    def update(self, job_id: str, **fields: Any) -> None:
        self._set(job_id, fields)

    def update_patiently(self, job_id: str, fields: dict[str, Any], *, retry_s: float, pause_s: float) -> None:
        """``update``, tried again every ``pause_s`` for up to ``retry_s`` while the database is busy; an error
        that remains is raised (DomainError)."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                return self.update(job_id, **fields)
            except StorageBusyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(pause_s)

    def transition(self, job_id: str, current: str, **fields: Any) -> bool:
        """Update the job only while its status is ``current``; whether it was (one transaction)."""
        return self._set(job_id, fields, current=current)

    def _set(self, job_id: str, fields: dict[str, Any], *, current: str | None = None) -> bool:
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job fields {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)  # names checked against UPDATABLE
        guard, params = ("", ()) if current is None else (" AND status = ?", (current,))
        with self._write() as conn:
            cursor = conn.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?{guard}",
                                  (*fields.values(), job_id, *params))
        return cursor.rowcount == 1

    def add_failure(self, job_id: str, item_id: str, reason: str) -> int:
        """Record one failed item; returns the job's failure count so far."""
        with self._write() as conn:
            conn.execute("INSERT INTO job_failures VALUES (?, ?, ?)", (job_id, item_id, reason[:500]))
            conn.execute("UPDATE jobs SET failed = failed + 1 WHERE job_id = ?", (job_id,))
            (count,) = conn.execute("SELECT failed FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return int(count)

    def known(self, job_id: str) -> JobRecord:
        """The job's state; JobNotFoundError if unknown or forgotten."""
        job = self.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return job

    def get(self, job_id: str) -> JobRecord | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            return None if row is None else _status(conn, row)

    def recent(self, *, collection: str | None = None, status: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs newest first, of ``collection`` and in ``status`` where given; at most ``limit``."""
        clauses, params = ["1 = 1"], []
        for column, value in (("collection", collection), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")  # only fixed column names are formatted in
                params.append(value)
        query = (f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE {' AND '.join(clauses)} "
                 "ORDER BY created_at DESC, rowid DESC LIMIT ?")
        with self._read() as conn:
            return [_status(conn, row) for row in conn.execute(query, (*params, limit)).fetchall()]

    def counts_by_state(self) -> dict[str, int]:
        with self._read() as conn:
            return {state: int(n) for state, n in conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")}

    def last_finished(self) -> dict[str, LastReindexRecord]:
        """Collection -> its most recently finished job (succeeded, failed or interrupted)."""
        query = ("SELECT collection, job_id, status, finished_at, num_items FROM (SELECT *, ROW_NUMBER() OVER "
                 "(PARTITION BY collection ORDER BY finished_at DESC, created_at DESC) AS rank FROM jobs "
                 f"WHERE status IN {FINISHED}) WHERE rank = 1")
        with self._read() as conn:
            rows = conn.execute(query).fetchall()
        return {name: LastReindexRecord(job_id=job_id, status=status, finished_at=finished_at, num_items=num_items)
                for name, job_id, status, finished_at, num_items in rows}

    def forget_collection(self, collection: str) -> None:
        """Forget the finished jobs of a removed collection (a new one of that name starts with none)."""
        with self._write() as conn:
            ids = f"SELECT job_id FROM jobs WHERE collection = ? AND status IN {FINISHED}"
            conn.execute(f"DELETE FROM job_failures WHERE job_id IN ({ids})", (collection,))
            conn.execute(f"DELETE FROM jobs WHERE job_id IN ({ids})", (collection,))

    def mark_interrupted(self, running_elsewhere: Callable[[str], bool] = lambda collection: False) -> list[str]:
        """Turn jobs left ``queued``/``running`` by a dead process into ``interrupted`` (not those of collections
        where ``running_elsewhere`` says another live process runs one); returns their ids."""
        with self._write() as conn:
            rows = conn.execute("SELECT job_id, collection FROM jobs WHERE status IN ('queued', 'running')")
            ids = [job_id for job_id, collection in rows.fetchall() if not running_elsewhere(collection)]
            conn.executemany("UPDATE jobs SET status = 'interrupted', error = ?, finished_at = ? WHERE job_id = ?",
                             [(INTERRUPTED_ERROR, now(), job_id) for job_id in ids])
        return ids

    def prune(self, keep: int) -> None:
        """Forget all but the newest ``keep`` finished jobs."""
        with self._write() as conn:
            _prune(conn, keep)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _status(conn: sqlite3.Connection, row: tuple[Any, ...]) -> JobRecord:
    """A job's state from its row of COLUMNS, with its first MAX_REPORTED_FAILURES failed items."""
    job = dict(zip(COLUMNS, row, strict=True))
    failures = conn.execute("SELECT item_id, reason FROM job_failures WHERE job_id = ? LIMIT ?",
                            (job["job_id"], MAX_REPORTED_FAILURES)).fetchall()
    per_s = rate(job["done"] - job["resumed"], job["started_at"], job["finished_at"])
    eta_s = round((job["total"] - job["done"]) / per_s, 1) if per_s and job["status"] == "running" else None
    progress = JobProgressRecord(done=job["done"], total=job["total"], failed=job["failed"],
                                 rate_items_per_s=per_s, resumed=job["resumed"], eta_s=eta_s)
    return JobRecord(job_id=job["job_id"], collection=job["collection"], status=job["status"], progress=progress,
                     error=job["error"], version=job["version"], num_items=job["num_items"],
                     skipped=job["failed"], failures=[JobFailureRecord(id=i, reason=r) for i, r in failures],
                     created_at=job["created_at"], started_at=job["started_at"], finished_at=job["finished_at"])


def _add_resumed_column(conn: sqlite3.Connection) -> None:
    """Give a jobs file written before resumable re-index its ``resumed`` column."""
    try:
        if "resumed" not in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}:
            conn.execute("ALTER TABLE jobs ADD COLUMN resumed INTEGER NOT NULL DEFAULT 0")
    except sqlite3.Error as exc:
        conn.close()
        raise sqlite_failure(exc, "the jobs database") from exc


def _prune(conn: sqlite3.Connection, keep: int) -> None:
    old = ("SELECT job_id FROM jobs WHERE status NOT IN ('queued', 'running') "
           "ORDER BY created_at DESC LIMIT -1 OFFSET ?")
    conn.execute(f"DELETE FROM job_failures WHERE job_id IN ({old})", (keep,))
    conn.execute(f"DELETE FROM jobs WHERE job_id IN ({old})", (keep,))
