"""One collection as a running service holds it: its embedder and live index (swapped atomically), loaded from disk.

An upsert or delete is written to the collection's change log first and applied in memory only once it is
durable: a write that fails (locked or full) raises a storage error and changes nothing, not even until a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from arcsearch.index.bundle import read_embedder_manifest, sha256_of_path
from arcsearch.index.changes import Change, ChangeLog, replay_onto
from arcsearch.index.collections import (
    VERSIONS_DIR,
    CollectionInfo,
    collection_dir,
    current_index_dir,
    current_version,
    new_version_id,
    publish_version,
)
from arcsearch.index.durable import DEFAULT_BUSY_TIMEOUT_S, DurableWriteError
from arcsearch.index.embedder import ThreadPolicy, load_embedder
from arcsearch.index.faiss_index import IndexStoreError, normalise
from arcsearch.index.items import ItemRecord
from arcsearch.index.pairing import EmbedderMismatchError, check_embedder_pairing
from arcsearch.index.store import IndexStore
from arcsearch.index.threads import SearchThreads
from arcsearch.service.core.batching import (
    SUBMIT_TIMEOUT_S,
    Arrival,
    BatcherClosedError,
    BatchObserver,
    MicroBatcher,
    PendingQuery,
)
from arcsearch.service.core.embedding import SerialEmbedder
from arcsearch.service.core.errors import (
    CollectionEmptyError,
    CollectionNotFoundError,
    NotReadyError,
    storage_error,
)
from arcsearch.service.core.querying import (
    QueryAnswer,
    SearchOptions,
    StageObserver,
    VectorQueue,
    embed_and_search,
    search_vectors,
)
from arcsearch.service.core.records import CollectionState, IndexFactsRecord

logger = logging.getLogger(__name__)

CHANGES_FILE = "changes.sqlite"


@dataclass(frozen=True)
class Snapshot:
    """The live index of a collection (None until one is published) and its version id."""

    store: IndexStore | None
    version: str | None


@dataclass(frozen=True)
class ChangeMark:
    """A point in a collection's history: its live version and the last change logged so far."""

    version: str | None
    seq: int


class LoadedCollection:
    """A collection ready to answer queries; ``snapshot`` is replaced whole, never mutated."""

    def __init__(self, info: CollectionInfo, embedder: SerialEmbedder, snapshot: Snapshot) -> None:
        self.info = info
        self.embedder = embedder
        self.snapshot = snapshot
        self.batcher: MicroBatcher | None = None
        self.changes: ChangeLog | None = None
        self.mutation_lock = threading.Lock()
        self.observe_stage: StageObserver = lambda stage, seconds: None
        self.search_threads = SearchThreads()  # OpenMP threads per FAISS search (set by start_batching)
        self.vector_queue: VectorQueue | None = None  # vector queries searched together (set by start_batching)

    @property
    def name(self) -> str:
        return self.info.name

    def start_batching(self, *, max_batch: int, max_wait_ms: float, observe: BatchObserver | None = None,
                       observe_stage: StageObserver | None = None, search_threads: SearchThreads | None = None) -> None:
        """Answer ``query`` calls through a micro-batcher (one forward pass and one search per batch)."""
        if observe_stage is not None:
            self.observe_stage = observe_stage
        if search_threads is not None:
            self.search_threads = search_threads
        self.vector_queue = VectorQueue(self, max_batch=max_batch)
        self.batcher = MicroBatcher(self.name, lambda batch: embed_and_search(self, batch, self.observe_stage),
                                    max_batch=max_batch, max_wait_ms=max_wait_ms, observe=observe)

    def query(self, inputs: Sequence[Any], k: int, options: SearchOptions | None = None) -> QueryAnswer:
        """Embed ``inputs`` (images or texts, by modality) and search; batched with concurrent queries."""
        if self.batcher is None:
            return embed_and_search(self, [PendingQuery(inputs=inputs, k=k, options=options)], self.observe_stage)[0]
        try:
            return self.batcher.submit(inputs, k, options)
        except BatcherClosedError:
            raise NotReadyError("the service is shutting down; retry on another instance") from None

    def arriving(self) -> contextlib.AbstractContextManager[Arrival | None]:
        """Announce a query while its request is read and decoded (``MicroBatcher.arriving``), so that a batch
        being gathered waits for it; yields the ``arrival`` to pass to ``query_async`` (None without batching)."""
        return self.batcher.arriving() if self.batcher is not None else contextlib.nullcontext()

    async def query_async(self, inputs: Sequence[Any], k: int, options: SearchOptions | None = None, *,
                          arrival: Arrival | None = None) -> QueryAnswer:
        """``query`` for async handlers: awaits the micro-batch without holding a thread while it waits;
        ``arrival`` is the announcement of this query by ``arriving``, if any."""
        if self.batcher is None:
            return await anyio.to_thread.run_sync(functools.partial(self.query, inputs, k, options))
        try:
            future = self.batcher.enqueue(inputs, k, options, arrival=arrival)
        except BatcherClosedError:
            raise NotReadyError("the service is shutting down; retry on another instance") from None
        return await self.batcher.answer(asyncio.wrap_future(future), timeout_s=SUBMIT_TIMEOUT_S)

    def query_vectors(self, vectors: np.ndarray, k: int, options: SearchOptions | None = None) -> QueryAnswer:
        """Search given (n, dim) vectors (no embedding, no batching)."""
        batch = [PendingQuery(inputs=list(vectors), k=k, options=options)]
        return search_vectors(self, batch, np.asarray(vectors, np.float32), self.observe_stage)[0]

    def live_store(self) -> tuple[IndexStore, str]:
        """The live store and its version; CollectionEmptyError if nothing is published yet."""
        snapshot = self.snapshot
        if snapshot.store is None or snapshot.version is None:
            raise CollectionEmptyError(f"collection {self.name!r} has no index yet; re-index it first")
        return snapshot.store, snapshot.version

    @contextmanager
    def _change_log(self) -> Iterator[ChangeLog]:
        """The change log (call with ``mutation_lock`` held); a failed write becomes StorageBusyError
        (retry after the busy timeout), InsufficientStorageError or StorageUnavailableError."""
        if self.changes is None:
            raise CollectionNotFoundError(f"collection {self.name!r} was removed")
        try:
            yield self.changes
        except DurableWriteError as exc:
            raise storage_error(exc, retry_after_s=self.changes.busy_timeout_s) from exc

    def _log_then_apply(self, version: str, change: Change, apply: Callable[[], object]) -> None:
        """Write ``change`` durably, then ``apply`` it in memory; if applying fails, the change is retracted."""
        with self._change_log() as changes:
            seq = changes.append(version, change)
            try:
                apply()
            except BaseException:
                changes.retract(seq)
                raise

    def upsert(self, record: ItemRecord, vector: np.ndarray) -> bool:
        """Insert or replace an item: durable in the change log, then searchable; True if it replaced one."""
        unit = normalise(np.asarray(vector, np.float32).reshape(1, -1))[0]
        with self.mutation_lock:
            store, version = self.live_store()
            if len(unit) != store.dim:
                raise IndexStoreError(f"vector has dimension {len(unit)}, the index {store.dim}")
            replaced = store.get(record.external_id) is not None
            faiss_id = store.next_id
            self._log_then_apply(version, Change("upsert", record.external_id, faiss_id, record, unit.tobytes()),
                                 lambda: store.upsert(record, unit, faiss_id=faiss_id))
        if replaced:
            self.compact_in_background(store)
        return replaced

    def delete(self, external_id: str) -> bool:
        """Remove an item (durable in the change log first); False if there is none."""
        with self.mutation_lock:
            store, version = self.live_store()
            if store.get(external_id) is None:
                return False
            self._log_then_apply(version, Change("delete", external_id), lambda: store.delete(external_id))
        self.compact_in_background(store)
        return True

    def change_mark(self) -> ChangeMark:
        """Where the collection stands now; ``publish`` carries over the changes made after it."""
        with self.mutation_lock, self._change_log() as changes:
            return ChangeMark(self.snapshot.version, changes.last_seq())

    def compact_in_background(self, store: IndexStore) -> threading.Thread | None:
        """For an index that cannot remove vectors (HNSW), rebuild it without its tombstones in a thread."""
        if store.supports_delete or not store.tombstones:
            return None

        def run() -> None:
            try:
                while store.tombstones and store.compact():
                    pass
            except Exception:  # a failed compaction leaves the tombstones, which searches still exclude
                logger.exception("compacting collection %r failed", self.name)

        thread = threading.Thread(target=run, name=f"compact-{self.name}", daemon=True)
        thread.start()
        return thread

    def publish(self, collections_dir: Path, staged: Path, *, since: ChangeMark,
                search_params: str = "") -> tuple[IndexStore, str]:
        """Make the index bundle at ``staged`` the live version and serve it; returns (store, version).

        Upserts and deletes made after ``since`` (while a re-index built the bundle) are carried over onto
        it, written under the new version before CURRENT names it, so none is lost even by a crash; those
        made before are replaced. Upserts and deletes wait meanwhile; queries go on, on the old version.
        """
        with self.mutation_lock, self._change_log() as changes:
            version = new_version_id()
            if since.version is not None:
                changes.rebase(since.version, since.seq, version)
            publish_version(collections_dir, self.name, staged, version=version)
            store = IndexStore.load(collection_dir(collections_dir, self.name) / VERSIONS_DIR / version,
                                    search_params=search_params)
            check_embedder_pairing(store.manifest, self.embedder.manifest, where=f"index version {version}")
            replay_onto(store, changes, version)
            self.snapshot = Snapshot(store=store, version=version)
            try:
                changes.discard_except(version)
            except DurableWriteError as exc:  # never replayed; the next publish discards them
                logger.warning("collection %r: changes of old versions stay in the log for now: %s", self.name, exc)
        return store, version

    def summary(self) -> CollectionState:
        snapshot = self.snapshot
        store = snapshot.store
        live = store is not None
        return CollectionState(
            name=self.name, modality=self.info.modality, status="ready" if live else "empty",
            size=len(store) if live else 0, dim=self.embedder.dim, embedder_sha256=self.info.embedder_sha256,
            embedder_origin=self.info.embedder_origin, version=snapshot.version,
            index_type=store.manifest.factory if live else self.info.index_factory,
            index=IndexFactsRecord.of(store.manifest, memory_mapped=store.mapped_file is not None) if live else None)

    def close(self) -> None:
        """Answer queued queries, stop the micro-batcher and close the change log (the collection is unloaded)."""
        if self.batcher is not None:
            self.batcher.close()
        if self.vector_queue is not None:
            self.vector_queue.close()
        with self.mutation_lock:  # upserts and deletes in progress finish first
            if self.changes is not None:
                self.changes.close()
                self.changes = None


def load_collection(collections_dir: Path, info: CollectionInfo, *, device: str, search_params: str = "",
                    verify_hash: bool = True, embedders: dict[str, SerialEmbedder] | None = None,
                    threads: ThreadPolicy | None = None,
                    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> LoadedCollection:
    """Load a collection's embedder and live index; refuses an index built with another embedder."""
    folder = collection_dir(collections_dir, info.name)
    emb_dir = folder / info.embedder
    manifest = read_embedder_manifest(emb_dir)
    if manifest.weights_sha256 != info.embedder_sha256:
        raise EmbedderMismatchError(f"collection {info.name!r} expects embedder {info.embedder_sha256[:12]}, "
                                    f"{emb_dir} holds {manifest.weights_sha256[:12]}")
    cache = embedders if embedders is not None else {}
    if manifest.weights_sha256 not in cache:
        if verify_hash and sha256_of_path(emb_dir / manifest.weights_file) != manifest.weights_sha256:
            raise EmbedderMismatchError(f"embedder weights in {emb_dir} do not match their manifest hash")
        cache[manifest.weights_sha256] = SerialEmbedder(load_embedder(emb_dir, device=device), threads)
    embedder = cache[manifest.weights_sha256]
    version = current_version(collections_dir, info.name)
    store = None
    if version is not None:
        store = IndexStore.load(current_index_dir(collections_dir, info.name), search_params=search_params)
        check_embedder_pairing(store.manifest, manifest, where=f"index {info.name}/{version}")
    changes = ChangeLog(folder / CHANGES_FILE, busy_timeout_s=busy_timeout_s)
    if store is not None and version is not None:
        replay_onto(store, changes, version)
    logger.info("collection %r loaded: %s, version %s, %d items", info.name, info.modality, version,
                len(store) if store is not None else 0)
    loaded = LoadedCollection(info, embedder, Snapshot(store=store, version=version))
    loaded.changes = changes
    return loaded

