"""FAISS index bundles: an index plus its item table and manifest; save/load, search, upsert and delete.

A bundle is a folder with ``manifest.json`` (IndexManifest), ``index.faiss`` and ``items.sqlite``.
The FAISS building blocks (factory, training, search parameters, selectors) are in index.faiss_index.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from arcsearch.index.bundle import IndexManifest, Modality, read_index_manifest, write_manifest
from arcsearch.index.chooser import IndexBudget, build_index
from arcsearch.index.durable import fsync_dir, fsync_tree
from arcsearch.index.faiss_index import (
    IndexStoreError,
    add_vectors,
    can_remove,
    copy_search_params,
    enable_reconstruct,
    exact_search,
    id_selector,
    inner_index,
    make_index,
    normalise,
    search_parameters,
    set_search_params,
    train_index,
    unit_queries,
)
from arcsearch.index.hits import Hit
from arcsearch.index.items import ItemLookup, ItemRecord, MemoryItems, OverlayItems, SqliteItems, write_items
from arcsearch.index.mapped import MMAP_MIN_BYTES, read_in_memory, read_index_file
from arcsearch.index.rwlock import ReadWriteLock

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.sqlite"
# a filter matching at most this many items is scored exactly over their stored vectors (about 1.5 ms for
# 4,096 x 384 floats), never an approximate search with a selector that can miss matches
EXACT_FILTER_MAX_ITEMS = 4096


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
        self.search_params = manifest.search_params
        self.mapped_file: Path | None = None  # the file a memory-mapped index reads from (index/mapped.py)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @classmethod
    def build(cls, vectors: np.ndarray, records: Sequence[ItemRecord], *, modality: Modality, embedder_sha256: str,
              factory: str | None = "Flat", budget: IndexBudget | None = None, source: str = "") -> IndexStore:
        """Build an in-memory store from (n, d) vectors and their n records (row i = record i): with ``factory``,
        or (when it is None) an index chosen and tuned by ``budget`` (index/chooser.py)."""
        if len(vectors) != len(records):
            raise IndexStoreError(f"{len(vectors)} vectors but {len(records)} records")
        if len(records) == 0:
            raise IndexStoreError("cannot build an index of zero items")
        unit = normalise(vectors)
        index, factory, params, tuning = build_index(unit, factory=factory, budget=budget)
        manifest = IndexManifest(modality=modality, embedding_dim=unit.shape[1], factory=factory, search_params=params,
                                 tuning=tuning, num_items=len(records), embedder_sha256=embedder_sha256, source=source)
        return cls(index, MemoryItems(records), manifest)

    @classmethod
    def empty(cls, dim: int, *, modality: Modality, embedder_sha256: str, factory: str = "Flat") -> IndexStore:
        """A store of no items, to be filled by upserts; refuses factories that need training vectors (IVF, PQ)."""
        index = make_index(dim, factory)
        if not index.is_trained:
            raise IndexStoreError(f"index factory {factory!r} needs training vectors, so it cannot start empty")
        manifest = IndexManifest(modality=modality, embedding_dim=dim, factory=factory, num_items=0,
                                 embedder_sha256=embedder_sha256, source="empty")
        return cls(index, MemoryItems([]), manifest)

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
    def load(cls, folder: Path, *, search_params: str = "", mmap_min_bytes: int | None = MMAP_MIN_BYTES) -> IndexStore:
        """Load a bundle written by ``save`` (memory-mapped from ``mmap_min_bytes`` up, see index/mapped.py) with
        the manifest's search parameters, then ``search_params``; BundleError / IndexStoreError if incomplete."""
        folder = Path(folder)
        manifest = read_index_manifest(folder)
        index, mapped = read_index_file(folder / INDEX_FILE, mmap_min_bytes=mmap_min_bytes)
        store = cls(index, SqliteItems(folder / ITEMS_FILE), manifest)
        store.search_params = ",".join(p for p in (manifest.search_params, search_params) if p)
        set_search_params(index, store.search_params)
        store.mapped_file = folder / INDEX_FILE if mapped else None
        return store

    def search(self, queries: np.ndarray, k: int, *, label: str | None = None,
               metadata: dict[str, Any] | None = None, min_score: float | None = None,
               exclude: Sequence[str] = ()) -> list[list[Hit]]:
        """The ``k`` nearest items of each of the (n, d) queries, best first (fewer if the index is small).

        ``label`` / ``metadata`` restrict the search to matching items: up to ``EXACT_FILTER_MAX_ITEMS``
        matches are scored exactly from their stored vectors (an HNSW or IVF search with a selector can
        miss matches), more inside FAISS with an IDSelector; either way ``k`` results come back when ``k``
        items match; ``min_score`` drops hits below a cosine
        similarity; ``exclude`` leaves out items by external id (e.g. the query item itself).
        """
        unit = unit_queries(queries, k, dim=self.dim)
        if len(unit) == 0:
            return []
        with self.lock.read():
            excluded = set(self.tombstones) | {i for i in (self.items.find(e) for e in exclude) if i is not None}
            allowed = None
            if label is not None or metadata:
                allowed = [i for i in self.items.matching(label, metadata or {}) if i not in excluded]
                if not allowed:
                    return [[] for _ in range(len(unit))]
            want = min(k, len(allowed) if allowed is not None else len(self))
            if want < 1:
                return [[] for _ in range(len(unit))]
            exact = (exact_search(self.index, unit, allowed, want)
                     if allowed is not None and len(allowed) <= EXACT_FILTER_MAX_ITEMS else None)
            if exact is not None:
                scores, ids = exact
            else:
                selector = id_selector(allowed, excluded)
                params = search_parameters(self.index, selector) if selector is not None else None
                scores, ids = self.index.search(unit, want, params=params)
            records = self.items.get_many([int(i) for i in ids.ravel() if i >= 0])
        floor = -np.inf if min_score is None else min_score
        return [[Hit.of(records[int(i)], float(s)) for s, i in zip(row_s, row_i, strict=True)
                 if i >= 0 and int(i) in records and s >= floor] for row_s, row_i in zip(scores, ids, strict=True)]

    source = property(lambda self: self.manifest.source, doc="the corpus it was built from (manifest ``source``)")

    @property
    def supports_delete(self) -> bool:
        """Whether removed vectors leave the index (else they stay as tombstones until a re-index)."""
        return can_remove(self.index)

    def enable_mutations(self) -> None:
        """Wrap the item table for upserts and deletes; IVF indexes get a direct map for ``vector_of``."""
        with self.lock.write():
            if not isinstance(self.items, OverlayItems):
                self.items = OverlayItems(self.items)
            enable_reconstruct(self.index)

    def get(self, external_id: str) -> ItemRecord | None:
        with self.lock.read():
            found = self.items.find(external_id)
            return None if found is None else self.items.get_many([found]).get(found)

    def page(self, after: str | None, limit: int) -> list[ItemRecord]:
        """Up to ``limit`` items whose external ids come after ``after`` (None: from the first), by external id."""
        with self.lock.read():
            return [record for _, record in self.items.page(after, limit)]

    def vector_of(self, external_id: str) -> np.ndarray | None:
        """The stored (unit) vector of an item, or None if there is no such item."""
        with self.lock.read():
            found = self.items.find(external_id)
            return None if found is None else np.asarray(self.index.reconstruct(int(found)), np.float32)

    @property
    def next_id(self) -> int:
        """The FAISS id the next upsert gets unless told otherwise (ids are never reused)."""
        with self.lock.read():
            return self._overlay().next_id

    def upsert(self, record: ItemRecord, vector: np.ndarray, *, faiss_id: int | None = None) -> int:
        """Insert or replace ``record`` with its (d,) vector; returns the FAISS id it got."""
        unit = normalise(np.asarray(vector, np.float32).reshape(1, -1))
        if unit.shape[1] != self.dim:
            raise IndexStoreError(f"vector has dimension {unit.shape[1]}, the index {self.dim}")
        with self.lock.write():
            items = self._overlay()
            self._unmap()
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
            self._unmap()
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
            vectors = inner_index(self.index).reconstruct_n(0, self.index.ntotal)
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
            copy_search_params(self.index, fresh)
            self.index, self.tombstones, self._pending = fresh, tombstones, None
        logger.info("compacted index: dropped %d deleted vectors", len(dropped))
        return len(dropped)

    def _unmap(self) -> None:
        """Swap a memory-mapped index for a writable copy before writing to it (FAISS would abort); write lock."""
        if self.mapped_file is not None:
            self.index, self.mapped_file = read_in_memory(self.mapped_file, search_params=self.search_params), None

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
