"""The work folder of a resumable re-index: a plan and the shards finished so far.

Layout (``work_root`` is ``<collection>/shards/`` for a collection)::

    <work_root>/.lock                   flock held by the build that uses the folder
    <work_root>/<fingerprint[:24]>/plan.json           the corpus fingerprint, item and shard counts
    <work_root>/<fingerprint[:24]>/shard-000007.npy    vectors (n, d) float32 of shard 7's readable items
    <work_root>/<fingerprint[:24]>/shard-000007.json   their records and the shard's failed items

Shard k holds items ``[k * shard_items, (k + 1) * shard_items)`` of the corpus in its reading order. The
fingerprint covers the embedder hash, the batch and shard sizes and every item (id, text or file path with
its size and mtime, label, metadata), so a changed corpus or embedder never resumes from stale shards.
Each file is written to a temporary name, fsynced and renamed; the .json is renamed last, so a shard
counts as finished only when both files are whole.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arcsearch.index.durable import fsync_dir, write_text_atomic
from arcsearch.index.items import ItemRecord

logger = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
LOCK_FILE = ".lock"
FINGERPRINT_CHARS = 24
Failure = tuple[str, str]  # (item id, reason)


class ShardWorkError(RuntimeError):
    """The work folder cannot be used (another build holds it, or it is not a folder)."""


@dataclass(frozen=True)
class ShardPlan:
    """How a corpus of ``num_items`` items is cut into shards of ``shard_items`` (the last may be shorter)."""

    fingerprint: str
    num_items: int
    shard_items: int

    @property
    def num_shards(self) -> int:
        return -(-self.num_items // self.shard_items)

    def bounds(self, shard: int) -> tuple[int, int]:
        """Item positions [start, stop) of ``shard``."""
        start = shard * self.shard_items
        return start, min(start + self.shard_items, self.num_items)


@dataclass(frozen=True)
class Shard:
    """A finished shard: vectors (n, d) float32, their n records, and the items of its range that failed."""

    vectors: np.ndarray
    records: list[ItemRecord]
    failures: list[Failure]


def _item_key(item: Any) -> list[Any]:
    """What identifies one corpus item's content (ImageItem, InlineImage or TextItem) in the fingerprint."""
    common = [type(item).__name__, item.item_id, item.label, item.metadata]
    if hasattr(item, "text"):
        return [*common, item.text]
    if hasattr(item, "data"):
        return [*common, hashlib.sha256(item.data).hexdigest()]
    try:
        stat = os.stat(item.path)
        return [*common, str(item.path), item.source, stat.st_size, stat.st_mtime_ns]
    except OSError:
        return [*common, str(item.path), item.source, None, None]  # unreadable now: a failure when embedded


def corpus_fingerprint(items: Sequence[Any], *, embedder_sha256: str, batch_size: int, shard_items: int) -> str:
    """A sha256 hex digest of the embedder, the batching and every item in order."""
    digest = hashlib.sha256(json.dumps([embedder_sha256, batch_size, shard_items, len(items)]).encode())
    for item in items:
        digest.update(json.dumps(_item_key(item), sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _shard_path(work_dir: Path, shard: int, suffix: str) -> Path:
    return work_dir / f"shard-{shard:06d}{suffix}"


@contextmanager
def locked_work_root(work_root: Path) -> Iterator[Path]:
    """Hold an exclusive flock on ``work_root`` (created if missing) for the block; ShardWorkError at once if
    another build holds it. The lock goes with the process, so a killed build never leaves it taken."""
    work_root = Path(work_root)
    work_root.mkdir(parents=True, exist_ok=True)
    with (work_root / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ShardWorkError(f"another re-index is using {work_root}; wait for it to finish") from None
        try:
            yield work_root
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def open_work_dir(work_root: Path, plan: ShardPlan) -> Path:
    """The work folder of ``plan`` below ``work_root`` (call with the root locked): kept if it holds the same
    plan, else made afresh; the folders of other plans (a changed corpus or embedder) are removed."""
    work_dir = Path(work_root) / plan.fingerprint[:FINGERPRINT_CHARS]
    for other in Path(work_root).iterdir():
        if other.is_dir() and other != work_dir:
            logger.info("removing stale re-index shards %s", other)
            shutil.rmtree(other, ignore_errors=True)
    wanted = {"fingerprint": plan.fingerprint, "num_items": plan.num_items, "shard_items": plan.shard_items}
    try:
        same = json.loads((work_dir / PLAN_FILE).read_text(encoding="utf-8")) == wanted
    except (OSError, ValueError):
        same = False
    if not same:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        write_text_atomic(work_dir / PLAN_FILE, json.dumps(wanted))
    return work_dir


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_shard(work_dir: Path, shard: int, vectors: np.ndarray, records: Sequence[ItemRecord],
                failures: Sequence[Failure]) -> None:
    """Write shard ``shard`` atomically: vectors (n, d) float32 first, then the .json that marks it finished."""
    if len(vectors) != len(records):
        raise ValueError(f"shard {shard}: {len(vectors)} vectors but {len(records)} records")
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    _write_atomic(_shard_path(work_dir, shard, ".npy"), lambda handle: np.save(handle, array, allow_pickle=False))
    body = {"records": [[r.external_id, r.label, r.source, r.metadata] for r in records],
            "failures": [list(failure) for failure in failures]}
    _write_atomic(_shard_path(work_dir, shard, ".json"), lambda handle: handle.write(json.dumps(body).encode()))
    fsync_dir(work_dir)


def read_shard(work_dir: Path, shard: int) -> Shard | None:
    """Shard ``shard`` if it is finished and whole, else None."""
    try:
        body = json.loads(_shard_path(work_dir, shard, ".json").read_text(encoding="utf-8"))
        vectors = np.load(_shard_path(work_dir, shard, ".npy"), allow_pickle=False)
    except (OSError, ValueError):
        return None
    records = [ItemRecord(str(i), str(label), str(source), dict(meta)) for i, label, source, meta in body["records"]]
    if vectors.ndim != 2 or len(vectors) != len(records):
        logger.warning("shard %d in %s is inconsistent; embedding it again", shard, work_dir)
        return None
    return Shard(vectors.astype(np.float32, copy=False), records, [(str(i), str(r)) for i, r in body["failures"]])


def finished_shards(work_dir: Path, plan: ShardPlan) -> list[int]:
    """The shards of ``plan`` whose .json marker exists (read_shard checks that they are whole)."""
    return [k for k in range(plan.num_shards) if _shard_path(work_dir, k, ".json").is_file()]
