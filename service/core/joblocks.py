"""Which collections have a re-index job running, across every server process of one collections folder.

A job holds an advisory lock (``flock``) on ``<jobs folder>/running/<collection>.lock`` while it is queued or
running, and writes its id there. Replicas that share a folder (the milvus backend) thus refuse a second job for
a collection whichever replica runs the first, and a replica that starts marks ``interrupted`` only jobs whose
lock nobody holds: the kernel drops a lock when its process dies, so a killed job is never taken for a live
one. Locks need one host (or a file system with working ``flock``), like the SQLite jobs database beside them.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from arcsearch.service.core.errors import JobConflictError

RUNNING_DIR = "running"
MAX_JOB_ID_BYTES = 64


class RunningJobLocks:
    """The running-job locks of one jobs database's folder."""

    def __init__(self, jobs_db: Path) -> None:
        self.folder = Path(jobs_db).parent / RUNNING_DIR
        self._held: dict[str, int] = {}  # collection -> file descriptor holding its lock
        self._guard = threading.Lock()

    def _path(self, collection: str) -> Path:
        return self.folder / f"{collection}.lock"

    def claim(self, collection: str, job_id: str) -> None:
        """Hold ``collection``'s lock for ``job_id``; JobConflictError if another process holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(collection), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = os.pread(fd, MAX_JOB_ID_BYTES, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise JobConflictError(f"a re-index job for {collection!r} is already running (in another server "
                                   "process)", details={"job_id": running}) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, job_id.encode("ascii"), 0)
        with self._guard:
            self._held[collection] = fd

    def release(self, collection: str) -> None:
        """Drop ``collection``'s lock if this process holds it."""
        with self._guard:
            fd = self._held.pop(collection, None)
        if fd is not None:
            os.close(fd)  # closing drops the flock; the file stays (removing it would race with a new claim)

    def running_elsewhere(self, collection: str) -> bool:
        """Whether a job for ``collection`` runs in another process now (its lock is held there)."""
        path = self._path(collection)
        if not path.is_file():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
