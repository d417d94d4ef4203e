"""The files of a bundle folder, read as regular files only: walked, hashed and copied without following links.

A bundle is a tree of folders and regular files. A symbolic link (to ``/dev/zero``, ``/proc/self/environ``,
a folder elsewhere), a FIFO, a socket or a device file anywhere in it is refused with a ``BundleError``
naming the entry, before anything is read or written. Every open is relative to its parent folder's file
descriptor with ``O_NOFOLLOW``, so an entry swapped for a link while we work is refused too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_BUNDLE_BYTES = 4 * 2 ** 30  # a copied embedder bundle; the largest sentence-transformers models are ~1.3 GB
MAX_BUNDLE_FILES = 10_000
MAX_JSON_BYTES = 1 << 20  # manifest.json, modules.json, config.json
_DIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_DIRECTORY", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a FIFO swapped in never blocks the open
_CHUNK_BYTES = 1 << 20


class BundleError(ValueError):
    """A bundle folder is missing, malformed, or does not fit where it is used."""


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _refuse(root: Path, rel: str, mode: int) -> BundleError:
    return BundleError(f"{root / rel} is a {_kind(mode)}; a bundle may hold only folders and regular files "
                       "(links and special files are refused, never followed)")


def _lstat_mode(name: str, dir_fd: int | None = None) -> int:
    """The entry's own mode (0 if it does not exist); a link is reported as a link."""
    try:
        return os.lstat(name, dir_fd=dir_fd).st_mode
    except FileNotFoundError:
        return 0


def _open_at(name: str, dir_fd: int | None, *, flags: int, root: Path, rel: str) -> int:
    """Open ``name`` relative to ``dir_fd`` without following a link; BundleError if it is not what we expect."""
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:  # ELOOP: a link; ENOTDIR: not a folder; others: gone or unreadable
        mode = _lstat_mode(name, dir_fd)
        if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise _refuse(root, rel, mode) from exc
        raise BundleError(f"bundle {root}: cannot open {rel}: {exc.strerror}") from exc
    mode = os.fstat(fd).st_mode
    wanted = stat.S_ISDIR if flags & getattr(os, "O_DIRECTORY", 0) else stat.S_ISREG
    if not wanted(mode):
        os.close(fd)
        raise _refuse(root, rel, mode)
    return fd


def _walk(dir_fd: int, root: Path, prefix: str = "") -> Iterator[tuple[str, int, str, os.stat_result]]:
    """(relative path, parent folder fd, name, lstat) of every entry below ``dir_fd``, depth first, sorted by
    name (= sorted by path parts); BundleError at the first link or special file."""
    with os.scandir(dir_fd) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        rel, info = prefix + entry.name, entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            yield rel, dir_fd, entry.name, info
            sub = _open_at(entry.name, dir_fd, flags=_DIR_FLAGS, root=root, rel=rel)
            try:
                yield from _walk(sub, root, rel + "/")
            finally:
                os.close(sub)
        elif stat.S_ISREG(info.st_mode):
            yield rel, dir_fd, entry.name, info
        else:
            raise _refuse(root, rel, info.st_mode)


def _walk_folder(folder: Path) -> Iterator[tuple[str, int, str, os.stat_result]]:
    root_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        yield from _walk(root_fd, folder)
    finally:
        os.close(root_fd)


def bundle_files(folder: Path, *, max_bytes: int = MAX_BUNDLE_BYTES,
                 max_files: int = MAX_BUNDLE_FILES) -> list[tuple[str, int]]:
    """Every regular file below ``folder`` as (relative posix path, size in bytes), sorted by path.

    Raises BundleError for a link or special file, or past ``max_files`` files or ``max_bytes`` bytes.
    """
    files: list[tuple[str, int]] = []
    total_bytes = 0
    for rel, _fd, _name, info in _walk_folder(Path(folder)):
        if stat.S_ISREG(info.st_mode):
            files.append((rel, info.st_size))
            total_bytes += info.st_size
        if len(files) > max_files:
            raise BundleError(f"bundle {folder} holds more than {max_files} files; refused as too large")
        if total_bytes > max_bytes:
            raise BundleError(f"bundle {folder} holds more than {max_bytes} bytes (at least {total_bytes}); "
                              "refused as too large")
    return files


def _chunks(fd: int, size_bytes: int) -> Iterator[bytes]:
    """The first ``size_bytes`` bytes of an open regular file, in chunks."""
    left = size_bytes
    while left > 0:
        chunk = os.read(fd, min(_CHUNK_BYTES, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _hash_file(digest: hashlib._Hash, name: str, dir_fd: int | None, *, root: Path, rel: str) -> None:
    fd = _open_at(name, dir_fd, flags=_FILE_FLAGS, root=root, rel=rel)
    try:
        for chunk in _chunks(fd, os.fstat(fd).st_size):
            digest.update(chunk)
    finally:
        os.close(fd)


def sha256_of_path(path: Path) -> str:
    """Content hash of a file, or of every file below a folder (relative names included, sorted).

    Links and special files are refused (BundleError), never followed.
    """
    path = Path(path)
    digest = hashlib.sha256()
    mode = _lstat_mode(str(path))
    if stat.S_ISREG(mode):
        _hash_file(digest, str(path), None, root=path.parent, rel=path.name)
        return digest.hexdigest()
    if mode and not stat.S_ISDIR(mode):
        raise _refuse(path.parent, path.name, mode)
    hashed = 0
    for rel, dir_fd, name, info in _walk_folder(path) if mode else ():
        if stat.S_ISREG(info.st_mode):
            digest.update(rel.encode())
            _hash_file(digest, name, dir_fd, root=path, rel=rel)
            hashed += 1
    if not hashed:
        raise BundleError(f"nothing to hash at {path}")
    return digest.hexdigest()


def _copy_file(name: str, dir_fd: int, target: Path, *, root: Path, rel: str, budget_bytes: int) -> int:
    """Copy one regular file to ``target``; returns its size. BundleError past ``budget_bytes``."""
    fd = _open_at(name, dir_fd, flags=_FILE_FLAGS, root=root, rel=rel)
    try:
        size_bytes = os.fstat(fd).st_size
        if size_bytes > budget_bytes:
            raise BundleError(f"bundle {root} grew past its size bound while being copied (at {rel})")
        with target.open("xb") as out:
            for chunk in _chunks(fd, size_bytes):
                out.write(chunk)
        return size_bytes
    finally:
        os.close(fd)


def copy_bundle_safely(source: Path, target: Path, *, max_bytes: int = MAX_BUNDLE_BYTES,
                       max_files: int = MAX_BUNDLE_FILES) -> Path:
    """Copy the bundle folder ``source`` to the new folder ``target`` (FileExistsError if it exists).

    Only folders and regular files are copied; a link or special file anywhere, more than ``max_files``
    files or more than ``max_bytes`` bytes raise BundleError before anything is written. A failed copy
    leaves no ``target`` behind.
    """
    source, target = Path(source), Path(target)
    bundle_files(source, max_bytes=max_bytes, max_files=max_files)
    target.mkdir()
    budget_bytes = max_bytes
    try:
        for rel, dir_fd, name, info in _walk_folder(source):
            if stat.S_ISDIR(info.st_mode):
                (target / rel).mkdir()
            else:
                budget_bytes -= _copy_file(name, dir_fd, target / rel, root=source, rel=rel,
                                           budget_bytes=budget_bytes)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def read_small_json(path: Path, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse the JSON file ``path``: a regular file (not a link) of at most ``max_bytes`` bytes.

    FileNotFoundError if it is missing; BundleError if it is anything else or not valid JSON.
    """
    path = Path(path)
    mode = _lstat_mode(str(path))
    if not mode:
        raise FileNotFoundError(path)
    fd = _open_at(str(path), None, flags=_FILE_FLAGS, root=path.parent, rel=path.name)
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise BundleError(f"{path} is larger than {max_bytes} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
