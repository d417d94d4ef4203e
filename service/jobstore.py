"""Re-index jobs in SQLite (``<collections_dir>/jobs.sqlite`` by default), so they survive a restart.

Two tables: ``jobs`` (one row per job: state, progress, result) and ``job_failures`` (items that could
not be indexed, with the reason). ``mark_interrupted`` runs at startup: a job still ``queued`` or
``running`` in the file belonged to a process that died, so it becomes ``interrupted``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.schemas import JobFailure, JobProgress, JobStatus, LastReindex

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, collection TEXT NOT NULL, source TEXT NOT NULL, status TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    error TEXT, version TEXT, num_items INTEGER, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT);
CREATE TABLE IF NOT EXISTS job_failures (
    job_id TEXT NOT NULL, item_id TEXT NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_failures_by_job ON job_failures (job_id);
"""
COLUMNS = ("job_id", "collection", "source", "status", "done", "total", "failed", "error", "version",
           "num_items", "created_at", "started_at", "finished_at")
UPDATABLE = set(COLUMNS) - {"job_id", "collection", "source", "created_at"}
FINISHED = "('succeeded', 'failed', 'interrupted')"
MAX_REPORTED_FAILURES = 100
INTERRUPTED_ERROR = "the server stopped while this job ran; the previous index version is still served"


def now() -> str:
    return datetime.now(UTC).isoformat()


def rate(done: int, started_at: str | None, finished_at: str | None) -> float | None:
    """Items per second between the start and the end (or now); None before the job starts."""
    if started_at is None:
        return None
    end = datetime.fromisoformat(finished_at) if finished_at else datetime.now(UTC)
    elapsed_s = (end - datetime.fromisoformat(started_at)).total_seconds()
    return round(done / elapsed_s, 2) if elapsed_s > 0 else None


class JobStore:
    """Thread-safe access to the jobs file (one connection, one lock; WAL, synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._tx() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def create(self, job_id: str, collection: str, source: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT INTO jobs (job_id, collection, source, status, created_at) VALUES (?, ?, ?, ?, ?)",
                         (job_id, collection, source, "queued", now()))

    def update(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job fields {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)  # names checked against UPDATABLE
        with self._tx() as conn:
            conn.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", (*fields.values(), job_id))

    def add_failure(self, job_id: str, item_id: str, reason: str) -> int:
        """Record one failed item; returns the job's failure count so far."""
        with self._tx() as conn:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO job_failures VALUES (?, ?, ?)", (job_id, item_id, reason[:500]))
            conn.execute("UPDATE jobs SET failed = failed + 1 WHERE job_id = ?", (job_id,))
            conn.execute("COMMIT")
            (count,) = conn.execute("SELECT failed FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return int(count)

    def get(self, job_id: str) -> JobStatus | None:
        with self._tx() as conn:
            row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            failures = conn.execute("SELECT item_id, reason FROM job_failures WHERE job_id = ? LIMIT ?",
                                    (job_id, MAX_REPORTED_FAILURES)).fetchall()
        job = dict(zip(COLUMNS, row, strict=True))
        progress = JobProgress(done=job["done"], total=job["total"], failed=job["failed"],
                               rate_items_per_s=rate(job["done"], job["started_at"], job["finished_at"]))
        return JobStatus(job_id=job["job_id"], collection=job["collection"], status=job["status"], progress=progress,
                         error=job["error"], version=job["version"], num_items=job["num_items"],
                         skipped=job["failed"], failures=[JobFailure(id=i, reason=r) for i, r in failures],
                         created_at=job["created_at"], started_at=job["started_at"],
                         finished_at=job["finished_at"])

    def counts_by_state(self) -> dict[str, int]:
        with self._tx() as conn:
            return {state: int(n) for state, n in conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")}

    def last_finished(self) -> dict[str, LastReindex]:
        """Collection -> its most recently finished job (succeeded, failed or interrupted)."""
        query = ("SELECT collection, job_id, status, finished_at, num_items FROM (SELECT *, ROW_NUMBER() OVER "
                 "(PARTITION BY collection ORDER BY finished_at DESC, created_at DESC) AS rank FROM jobs "
                 f"WHERE status IN {FINISHED}) WHERE rank = 1")
        with self._tx() as conn:
            rows = conn.execute(query).fetchall()
        return {name: LastReindex(job_id=job_id, status=status, finished_at=finished_at, num_items=num_items)
                for name, job_id, status, finished_at, num_items in rows}

    def forget_collection(self, collection: str) -> None:
        """Forget the finished jobs of a removed collection (a new one of that name starts with none)."""
        with self._tx() as conn:
            conn.execute("BEGIN")
            ids = f"SELECT job_id FROM jobs WHERE collection = ? AND status IN {FINISHED}"
            conn.execute(f"DELETE FROM job_failures WHERE job_id IN ({ids})", (collection,))
            conn.execute(f"DELETE FROM jobs WHERE job_id IN ({ids})", (collection,))
            conn.execute("COMMIT")

    def mark_interrupted(self) -> list[str]:
        """Turn jobs left ``queued``/``running`` by a dead process into ``interrupted``; returns their ids."""
        with self._tx() as conn:
            ids = [r[0] for r in conn.execute("SELECT job_id FROM jobs WHERE status IN ('queued', 'running')")]
            conn.execute("UPDATE jobs SET status = 'interrupted', error = ?, finished_at = ? "
                         "WHERE status IN ('queued', 'running')", (INTERRUPTED_ERROR, now()))
        return ids

    def prune(self, keep: int) -> None:
        """Forget all but the newest ``keep`` finished jobs."""
        with self._tx() as conn:
            conn.execute("BEGIN")
            old = ("SELECT job_id FROM jobs WHERE status NOT IN ('queued', 'running') "
                   "ORDER BY created_at DESC LIMIT -1 OFFSET ?")
            conn.execute(f"DELETE FROM job_failures WHERE job_id IN ({old})", (keep,))
            conn.execute(f"DELETE FROM jobs WHERE job_id IN ({old})", (keep,))
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._tx() as conn:
            conn.close()
