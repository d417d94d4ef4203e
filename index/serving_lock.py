"""One serving process per collections folder: an advisory lock (``flock``) on ``<folder>/.serving.lock``.

Two processes serving one folder would corrupt each other silently: each keeps its own in-memory view
of the change logs and FAISS ids, marks the other's running jobs interrupted, and publishes versions the
other never loads. The process that serves a folder holds this lock until it stops (the kernel drops it
when the process dies, so a crash never leaves a stale lock); a second process gets FolderInUseError
naming the folder and the holder's pid. Several apps inside one process (tests) share the one lock.

Processes that serve only Milvus collections (``ARCSEARCH_INDEX_BACKEND=milvus``: they hold no index state)
take the lock ``shared``: any number of them serve one folder together, and no exclusive holder meanwhile.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".serving.lock"
_MAX_PID_BYTES = 32

_held: dict[Path, tuple[int, int]] = {}  # resolved folder -> (file descriptor, users in this process)
_held_guard = threading.Lock()


class FolderInUseError(RuntimeError):
    """Another process serves this collections folder."""


def _holder_pid(fd: int) -> str:
    text = os.pread(fd, _MAX_PID_BYTES, 0).decode("ascii", errors="replace").strip()
    return text if text.isdigit() else "unknown"


def _acquire(folder: Path, *, shared: bool) -> None:
    with _held_guard:
        if folder in _held:
            fd, users = _held[folder]
            _held[folder] = (fd, users + 1)
            return
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            raise FolderInUseError(
                f"the collections folder {folder} is already served by another process (pid {pid}); "
                + ("it serves FAISS collections, which one process owns: stop it first" if shared else
                   "one server process per folder (with ARCSEARCH_INDEX_BACKEND=faiss): stop it, serve a copy of "
                   "the folder, or serve Milvus collections only (ARCSEARCH_INDEX_BACKEND=milvus)")) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        _held[folder] = (fd, 1)


def _release(folder: Path) -> None:
    with _held_guard:
        fd, users = _held[folder]
        if users > 1:
            _held[folder] = (fd, users - 1)
            return
        del _held[folder]
        os.close(fd)  # closing the last descriptor drops the flock


@contextmanager
def serving_lock(folder: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the serving lock of ``folder`` (created if missing) for the block, exclusive or ``shared``;
    FolderInUseError if another process holds it in a way that excludes that. Nested or concurrent holders in
    this process share the first one's lock."""
    key = Path(folder).resolve()
    _acquire(key, shared=shared)
    try:
        yield
    finally:
        _release(key)
