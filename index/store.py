"""FAISS index bundles: build stages, save/load, search.

A bundle is a folder with ``manifest.json`` (IndexManifest), ``index.faiss`` and ``items.sqlite``.
Vectors are L2-normalised and compared by inner product (= cosine similarity, in [-1, 1]).
Build stages are separate functions, as in FAISS's benchmarks::

    index = make_index(dim, "IVF64,Flat")   # factory string
    train_index(index, vectors)             # no-op unless the index needs training
    add_vectors(index, vectors)             # FAISS ids 0..n-1 = positions in the item table
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.bundle import EmbedderManifest, IndexManifest, Modality, read_index_manifest, write_manifest
from index.durable import fsync_dir, fsync_tree
from index.items import ItemLookup, ItemRecord, MemoryItems, OverlayItems, SqliteItems, write_items

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.sqlite"


class IndexStoreError(ValueError):
    """An index cannot be built, saved, loaded or searched as asked (bad shapes, factory, files)."""


class EmbedderMismatchError(IndexStoreError):
    """An index is paired with an embedder other than the one its vectors were made with."""


def check_embedder_pairing(index: IndexManifest, embedder: EmbedderManifest, *, where: str = "index") -> None:
    """Raise EmbedderMismatchError unless ``index`` was built with exactly this embedder (weights hash)."""
    if index.embedder_sha256 != embedder.weights_sha256:
        raise EmbedderMismatchError(
            f"{where} was built with embedder {index.embedder_sha256[:12]}, but the embedder here is "
            f"{embedder.weights_sha256[:12]}; re-index with this embedder or use the one it was built with")
    if index.modality != embedder.modality or index.embedding_dim != embedder.embedding_dim:
        raise EmbedderMismatchError(f"{where} holds {index.modality} vectors of dimension {index.embedding_dim}; "
                                    f"the embedder makes {embedder.modality} vectors of {embedder.embedding_dim}")


@dataclass(frozen=True)
class Hit:
    """One search result; ``score`` is the cosine similarity of query and item, in [-1, 1]."""

    external_id: str
    score: float
    label: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 copy of (n, d) ``vectors`` with unit L2 rows (zero rows stay zero)."""
    array = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if array.ndim != 2:
        raise IndexStoreError(f"expected a 2-d array of vectors (n, d), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise IndexStoreError("vectors contain NaN or infinite values")
    faiss.normalize_L2(array)
    return array


def _accepts_ids(index: faiss.Index) -> bool:
    """Whether ``index.add_with_ids`` works without an IDMap wrapper."""
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIDMap | faiss.IndexIDMap2 | faiss.IndexIVF):
        return True
    if isinstance(inner, faiss.IndexPreTransform):
        return _accepts_ids(inner.index)
    return False


def make_index(dim: int, factory: str = "Flat") -> faiss.Index:
    """An empty inner-product index of dimension ``dim`` from a FAISS factory string, able to take ids."""
    if dim <= 0:
        raise IndexStoreError(f"dimension must be positive, got {dim}")
    try:
        index = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise IndexStoreError(f"FAISS cannot build factory {factory!r} for d={dim}: {exc}") from exc
    return index if _accepts_ids(index) else faiss.IndexIDMap2(index)


def train_index(index: faiss.Index, vectors: np.ndarray) -> None:
    """Train ``index`` on normalised (n, d) vectors if it needs training; otherwise do nothing."""
    if index.is_trained:
        return
    try:
        index.train(vectors)
    except RuntimeError as exc:
        raise IndexStoreError(f"training the index on {len(vectors)} vectors failed: {exc}") from exc
    logger.info("trained index on %d vectors", len(vectors))


def add_vectors(index: faiss.Index, vectors: np.ndarray, *, first_id: int = 0) -> None:
    """Add normalised (n, d) vectors with FAISS ids ``first_id .. first_id + n - 1``."""
    ids = np.arange(first_id, first_id + len(vectors), dtype=np.int64)
    try:
        index.add_with_ids(vectors, ids)
    except RuntimeError as exc:
        raise IndexStoreError(f"adding {len(vectors)} vectors failed: {exc}") from exc


def set_search_params(index: faiss.Index, params: str) -> None:
    """Apply a FAISS search-parameter string such as ``"nprobe=16"`` or ``"efSearch=64"``."""
    if not params:
        return
    try:
        faiss.ParameterSpace().set_index_parameters(index, params)
    except RuntimeError as exc:
        raise IndexStoreError(f"cannot apply search parameters {params!r}: {exc}") from exc


class ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers (so writes are not starved).

    FAISS allows concurrent searches but not a search concurrent with an add or remove.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _inner(index: faiss.Index) -> faiss.Index:
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIDMap | faiss.IndexIDMap2):
        return faiss.downcast_index(inner.index)
    return inner


def search_parameters(index: faiss.Index, selector: faiss.IDSelector) -> faiss.SearchParameters:
    """Parameters that restrict a search of ``index`` to ``selector``, keeping its nprobe / efSearch."""
    inner = _inner(index)
    if isinstance(inner, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=inner.nprobe)
    if isinstance(inner, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=inner.hnsw.efSearch)
    return faiss.SearchParameters(sel=selector)


def _copy_search_params(old: faiss.Index, new: faiss.Index) -> None:
    old_inner, new_inner = _inner(old), _inner(new)
    if isinstance(old_inner, faiss.IndexHNSW) and isinstance(new_inner, faiss.IndexHNSW):
        new_inner.hnsw.efSearch = old_inner.hnsw.efSearch


class IndexStore:
    """A FAISS index plus its item table and manifest.

    Searches run concurrently under a read lock; ``upsert`` and ``delete`` take the write lock.
    Index types that cannot remove vectors (HNSW) keep deleted ids as tombstones, excluded inside
    every search by an IDSelector, until ``compact`` rebuilds the index without them.
    """

    def __init__(self, index: faiss.Index, items: ItemLookup, manifest: IndexManifest) -> None:
        if index.ntotal != len(items) or manifest.num_items != len(items):
            raise IndexStoreError(f"index holds {index.ntotal} vectors, item table {len(items)} rows, "
                                  f"manifest says {manifest.num_items}")
        if index.d != manifest.embedding_dim:
            raise IndexStoreError(f"index dimension {index.d} != manifest {manifest.embedding_dim}")
        self.index = index
        self.items = items
        self.manifest = manifest
        self.lock = ReadWriteLock()
        self.tombstones: set[int] = set()
        self._pending: list[tuple[str, int, np.ndarray | None]] | None = None  # changes during compact()
        self._compacting = threading.Lock()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @classmethod
    def build(cls, vectors: np.ndarray, records: Sequence[ItemRecord], *, modality: Modality,
              embedder_sha256: str, factory: str = "Flat", source: str = "") -> IndexStore:
        """Build an in-memory store from (n, d) vectors and their n records (row i = record i)."""
        if len(vectors) != len(records):
            raise IndexStoreError(f"{len(vectors)} vectors but {len(records)} records")
        if len(records) == 0:
            raise IndexStoreError("cannot build an index of zero items")
        items = MemoryItems(records)
        unit = normalise(vectors)
        index = make_index(unit.shape[1], factory)
        train_index(index, unit)
        add_vectors(index, unit)
        manifest = IndexManifest(modality=modality, embedding_dim=unit.shape[1], factory=factory,
                                 num_items=len(records), embedder_sha256=embedder_sha256, source=source)
        return cls(index, items, manifest)

    def save(self, out_dir: Path) -> Path:
        """Write the bundle to ``out_dir`` (must not exist) via ``<out_dir>.partial``, fsync, rename."""
        out_dir = Path(out_dir)
        if out_dir.exists():
            raise IndexStoreError(f"{out_dir} already exists; index bundles are written once")
        partial = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            faiss.write_index(self.index, str(partial / INDEX_FILE))
            write_items(partial / ITEMS_FILE, self.items.iter_records())
            write_manifest(partial, self.manifest)
            fsync_tree(partial)
            partial.rename(out_dir)
            fsync_dir(out_dir.parent)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        logger.info("saved index bundle of %d items to %s", len(self), out_dir)
        return out_dir

    @classmethod
    def load(cls, folder: Path, *, search_params: str = "") -> IndexStore:
        """Load a bundle written by ``save``; raises BundleError / IndexStoreError if it is incomplete."""
        folder = Path(folder)
        manifest = read_index_manifest(folder)
        if not (folder / INDEX_FILE).is_file():
            raise IndexStoreError(f"index bundle {folder} lacks {INDEX_FILE}")
        try:
            index = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError as exc:
            raise IndexStoreError(f"cannot read {folder / INDEX_FILE}: {exc}") from exc
        set_search_params(index, search_params)
        return cls(index, SqliteItems(folder / ITEMS_FILE), manifest)

    def search(self, queries: np.ndarray, k: int, *, label: str | None = None,
               metadata: dict[str, Any] | None = None, min_score: float | None = None,
               exclude: Sequence[str] = ()) -> list[list[Hit]]:
        """The ``k`` nearest items of each of the (n, d) queries, best first (fewer if the index is small).

        ``label`` / ``metadata`` restrict the search to matching items inside FAISS (an IDSelector), so
        ``k`` results come back when ``k`` items match; ``min_score`` drops hits below a cosine
        similarity; ``exclude`` leaves out items by external id (e.g. the query item itself).
        """
        if k < 1:
            raise IndexStoreError(f"k must be at least 1, got {k}")
        unit = normalise(queries)
        if unit.shape[1] != self.dim:
            raise IndexStoreError(f"queries have dimension {unit.shape[1]}, the index {self.dim}")
        if len(unit) == 0:
            return []
        with self.lock.read():
            excluded = set(self.tombstones) | {i for i in (self.items.find(e) for e in exclude) if i is not None}
            allowed = None
            if label is not None or metadata:
                allowed = [i for i in self.items.matching(label, metadata or {}) if i not in excluded]
                if not allowed:
                    return [[] for _ in range(len(unit))]
            selector = self._selector(allowed, excluded)
            params = search_parameters(self.index, selector) if selector is not None else None
            want = min(k, len(allowed) if allowed is not None else len(self))
            if want < 1:
                return [[] for _ in range(len(unit))]
            scores, ids = self.index.search(unit, want, params=params)
            records = self.items.get_many([int(i) for i in ids.ravel() if i >= 0])
        floor = -np.inf if min_score is None else min_score
        return [[self._hit(records[int(i)], float(s)) for s, i in zip(row_s, row_i, strict=True)
                 if i >= 0 and int(i) in records and s >= floor] for row_s, row_i in zip(scores, ids, strict=True)]

    @staticmethod
    def _selector(allowed: list[int] | None, excluded: set[int]) -> faiss.IDSelector | None:
        if allowed is not None:
            return faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        if excluded:
            return faiss.IDSelectorNot(faiss.IDSelectorBatch(np.asarray(sorted(excluded), dtype=np.int64)))
        return None

    @property
    def supports_delete(self) -> bool:
        """Whether removed vectors leave the index (else they stay as tombstones until a re-index)."""
        return not isinstance(_inner(self.index), faiss.IndexHNSW)

    def enable_mutations(self) -> None:
        """Wrap the item table for upserts and deletes; IVF indexes get a direct map for ``vector_of``."""
        with self.lock.write():
            if not isinstance(self.items, OverlayItems):
                self.items = OverlayItems(self.items)
            inner = _inner(self.index)
            if isinstance(inner, faiss.IndexIVF) and inner.direct_map.type == faiss.DirectMap.NoMap:
                inner.set_direct_map_type(faiss.DirectMap.Hashtable)

    def get(self, external_id: str) -> ItemRecord | None:
        with self.lock.read():
            found = self.items.find(external_id)
            return None if found is None else self.items.get_many([found]).get(found)

    def vector_of(self, external_id: str) -> np.ndarray | None:
        """The stored (unit) vector of an item, or None if there is no such item."""
        with self.lock.read():
            found = self.items.find(external_id)
            return None if found is None else np.asarray(self.index.reconstruct(int(found)), np.float32)

    def upsert(self, record: ItemRecord, vector: np.ndarray, *, faiss_id: int | None = None) -> int:
        """Insert or replace ``record`` with its (d,) vector; returns the FAISS id it got."""
        unit = normalise(np.asarray(vector, np.float32).reshape(1, -1))
        if unit.shape[1] != self.dim:
            raise IndexStoreError(f"vector has dimension {unit.shape[1]}, the index {self.dim}")
        with self.lock.write():
            items = self._overlay()
            old = items.find(record.external_id)
            if old is not None:
                self._remove(items, old)
            new_id = items.next_id if faiss_id is None else faiss_id
            add_vectors(self.index, unit, first_id=new_id)
            items.add(new_id, record)
            if self._pending is not None:
                self._pending.append(("add", new_id, unit))
        return new_id

    def delete(self, external_id: str) -> bool:
        """Remove an item; False if there is none with that id."""
        with self.lock.write():
            items = self._overlay()
            found = items.find(external_id)
            if found is None:
                return False
            self._remove(items, found)
            return True

    def compact(self) -> int:
        """Rebuild an index that cannot remove vectors without its tombstones; returns how many were dropped.

        The new index is built from the live vectors outside the write lock (searches go on); upserts and
        deletes made meanwhile are applied to it before it replaces the old one under the write lock.
        """
        if self.supports_delete or not self._compacting.acquire(blocking=False):
            return 0
        try:
            return self._compact()
        finally:
            self._compacting.release()

    def _compact(self) -> int:
        with self.lock.read():
            dropped = set(self.tombstones)
            if not dropped:
                return 0
            ids = faiss.vector_to_array(faiss.downcast_index(self.index).id_map).astype(np.int64)
            vectors = _inner(self.index).reconstruct_n(0, self.index.ntotal)
            self._pending = []
        keep = np.asarray([i not in dropped for i in ids], dtype=bool)
        fresh = make_index(self.dim, self.manifest.factory)
        train_index(fresh, vectors[keep])
        fresh.add_with_ids(vectors[keep], ids[keep])
        with self.lock.write():
            tombstones = self.tombstones - dropped
            for op, faiss_id, vector in self._pending or []:
                if op == "add" and vector is not None:
                    fresh.add_with_ids(vector, np.asarray([faiss_id], dtype=np.int64))
                elif faiss_id not in dropped:
                    tombstones.add(faiss_id)
            _copy_search_params(self.index, fresh)
            self.index, self.tombstones, self._pending = fresh, tombstones, None
        logger.info("compacted index: dropped %d deleted vectors", len(dropped))
        return len(dropped)

    def _overlay(self) -> OverlayItems:
        if not isinstance(self.items, OverlayItems):
            raise IndexStoreError("this index is read-only; call enable_mutations() first")
        return self.items

    def _remove(self, items: OverlayItems, faiss_id: int) -> None:
        if self.supports_delete:
            self.index.remove_ids(np.asarray([faiss_id], dtype=np.int64))
        else:
            self.tombstones.add(faiss_id)
            if self._pending is not None:
                self._pending.append(("remove", faiss_id, None))
        items.remove(faiss_id)

    @staticmethod
    def _hit(record: ItemRecord, score: float) -> Hit:
        return Hit(external_id=record.external_id, score=score, label=record.label, source=record.source,
                   metadata=record.metadata)
