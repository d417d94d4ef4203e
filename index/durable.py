"""Durable file-system steps: fsync files and folders, write small files atomically; what a failed write means.

A rename is atomic, but only durable once the folder that holds the name is fsynced too. A SQLite write
that fails is told apart by ``sqlite_failure``: busy (another connection holds the write lock: retry
later), full (the disk or the file's size limit), or anything else.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13  # primary result codes (the low byte of an extended one)
DEFAULT_BUSY_TIMEOUT_S = 5.0  # how long an SQLite write waits for another connection's lock (sqlite3's default)


class DurableWriteError(RuntimeError):
    """A durable write failed; the change it was for did not happen."""


class StorageBusyError(DurableWriteError):
    """Another connection or process held the database's write lock for longer than the busy timeout."""


class StorageFullError(DurableWriteError):
    """The disk (or the database's size limit) is full."""


def sqlite_failure(exc: sqlite3.Error, what: str) -> DurableWriteError:
    """The DurableWriteError for a failed SQLite statement on ``what`` (e.g. "the change log of 'texts'")."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (SQLITE_BUSY, SQLITE_LOCKED) or "database is locked" in str(exc):
        return StorageBusyError(f"{what} is locked by another connection or process ({exc}); retry shortly")
    if primary == SQLITE_FULL:
        return StorageFullError(f"{what} cannot grow: {exc}")
    return DurableWriteError(f"{what} cannot be used: {exc}")


def fsync_file(path: Path) -> None:
    """Flush one file's contents to disk."""
    with Path(path).open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (names created, renamed or removed in it) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder below ``root`` (and ``root`` itself) to disk."""
    root = Path(root)
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fsync_file(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: temp file, fsync, ``os.replace``, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def open_database(path: Path, *, schema: str, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
                  what: str) -> sqlite3.Connection:
    """Connect to the SQLite file ``path`` (autocommit, usable from any thread, WAL, synchronous=FULL) and
    run the ``schema`` script; a failure (e.g. a damaged file) closes it and raises a DurableWriteError."""
    conn = sqlite3.connect(path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(schema)
    except sqlite3.Error as exc:
        conn.close()
        raise sqlite_failure(exc, what) from exc
    return conn
