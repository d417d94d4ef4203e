"""What every served collection offers the routes and jobs, whichever backend holds its vectors: its embedder, a
live ``Snapshot`` to search, and queries answered through a micro-batcher (one forward pass per batch).

``LoadedCollection`` (service.core.collection) keeps a FAISS index in this process; ``MilvusCollection``
(service.core.milvus_collection) reaches a Milvus collection that other processes may serve too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from arcsearch.index.backend import SearchBackend
from arcsearch.index.bundle import read_embedder_manifest, sha256_of_path
from arcsearch.index.collections import CollectionInfo, collection_dir
from arcsearch.index.embedder import ThreadPolicy, load_embedder
from arcsearch.index.items import ItemRecord
from arcsearch.index.pairing import EmbedderMismatchError
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
from arcsearch.service.core.errors import CollectionEmptyError, NotReadyError
from arcsearch.service.core.querying import (
    QueryAnswer,
    SearchOptions,
    StageObserver,
    VectorQueue,
    embed_and_search,
    search_vectors,
)
from arcsearch.service.core.records import CollectionState


@dataclass(frozen=True)
class Snapshot:
    """The live index of a collection (None until one is published) and its version id."""

    store: SearchBackend | None
    version: str | None


@dataclass(frozen=True)
class ChangeMark:
    """A point in a collection's history: its live version and the last change logged so far."""

    version: str | None
    seq: int


class ServedCollection(ABC):
    """A collection ready to answer queries, through ``snapshot`` (read once per batch, never mutated)."""

    def __init__(self, info: CollectionInfo, embedder: SerialEmbedder) -> None:
        self.info = info
        self.embedder = embedder
        self.batcher: MicroBatcher | None = None
        self.mutation_lock = threading.Lock()
        self.observe_stage: StageObserver = lambda stage, seconds: None
        self.search_threads = SearchThreads()  # OpenMP threads per FAISS search (set by start_batching)
        self.vector_queue: VectorQueue | None = None  # vector queries searched together (set by start_batching)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    @abstractmethod
    def snapshot(self) -> Snapshot:
        """The live store and version, as one consistent pair."""

    def start_batching(self, *, max_batch: int, max_wait_ms: float, observe: BatchObserver | None = None,
                       observe_stage: StageObserver | None = None, search_threads: SearchThreads | None = None) -> None:
        """Answer ``query`` calls through a micro-batcher (one forward pass and one search per batch), and vector
        queries through a ``VectorQueue`` (the ones waiting searched together, no embedder)."""
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

    def live_store(self) -> tuple[SearchBackend, str]:
        """The live store and its version; CollectionEmptyError if nothing is published yet."""
        snapshot = self.snapshot
        if snapshot.store is None or snapshot.version is None:
            raise CollectionEmptyError(f"collection {self.name!r} has no index yet; re-index it first")
        return snapshot.store, snapshot.version

    @abstractmethod
    def upsert(self, record: ItemRecord, vector: np.ndarray) -> bool:
        """Insert or replace an item, searchable once this returns; True if it replaced one."""

    @abstractmethod
    def delete(self, external_id: str) -> bool:
        """Remove an item; False if there is none."""

    @abstractmethod
    def change_mark(self) -> ChangeMark:
        """Where the collection stands now: a re-index carries over the changes made after it."""

    def forget_mark(self, since: ChangeMark) -> None:  # noqa: B027 -- most backends keep nothing per mark
        """The re-index that took ``since`` has ended (published or not)."""

    @abstractmethod
    def summary(self) -> CollectionState: ...

    def close(self) -> None:
        """Answer queued queries and stop the micro-batcher and the vector queue (the collection is unloaded)."""
        if self.batcher is not None:
            self.batcher.close()
        if self.vector_queue is not None:
            self.vector_queue.close()


def load_served_embedder(collections_dir: Path, info: CollectionInfo, *, device: str, verify_hash: bool = True,
                         embedders: dict[str, SerialEmbedder] | None = None,
                         threads: ThreadPolicy | None = None) -> SerialEmbedder:
    """The collection's embedder (shared through ``embedders``, by weights hash, with collections of the same
    one); EmbedderMismatchError if its bundle is not the one collection.json names."""
    emb_dir = collection_dir(collections_dir, info.name) / info.embedder
    manifest = read_embedder_manifest(emb_dir)
    if manifest.weights_sha256 != info.embedder_sha256:
        raise EmbedderMismatchError(f"collection {info.name!r} expects embedder {info.embedder_sha256[:12]}, "
                                    f"{emb_dir} holds {manifest.weights_sha256[:12]}")
    cache = embedders if embedders is not None else {}
    if manifest.weights_sha256 not in cache:
        if verify_hash and sha256_of_path(emb_dir / manifest.weights_file) != manifest.weights_sha256:
            raise EmbedderMismatchError(f"embedder weights in {emb_dir} do not match their manifest hash")
        cache[manifest.weights_sha256] = SerialEmbedder(load_embedder(emb_dir, device=device), threads)
    return cache[manifest.weights_sha256]
