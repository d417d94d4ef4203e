"""A collection whose vectors, labels and metadata live in Milvus: this process holds its embedder and a client,
no index state, so any number of API processes can serve it at once (an upsert through one is found by a search
through another: reads are Strong unless ARCSEARCH_MILVUS_CONSISTENCY says otherwise, index.milvus_store).

A re-index builds a new Milvus version, then moves the collection's alias to it (``MilvusStore.reindex``):
searches answer from the old version throughout. Upserts and deletes this process accepts while the build runs
are repeated on the new version before the swap (the mutation lock holds them off meanwhile); those accepted by
other processes during the build are lost with the old version (docs/service.md, "Running on Milvus").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from arcsearch.index.collections import CollectionInfo
from arcsearch.index.embedder import ThreadPolicy
from arcsearch.index.items import ItemRecord
from arcsearch.index.milvus_names import MilvusStoreError
from arcsearch.index.milvus_store import HNSW_MIN_EF, Consistency, MilvusStore
from arcsearch.index.pairing import EmbedderMismatchError
from arcsearch.service.core.embedding import SerialEmbedder
from arcsearch.service.core.errors import BackendUnavailableError, CollectionExistsError
from arcsearch.service.core.records import CollectionState
from arcsearch.service.core.served import ChangeMark, ServedCollection, Snapshot, load_served_embedder

if TYPE_CHECKING:
    from pymilvus import MilvusClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Change:
    """An upsert (with its vector) or a delete accepted while a re-index builds."""

    external_id: str
    record: ItemRecord | None = None
    vector: np.ndarray | None = None


class MilvusCollection(ServedCollection):
    """A served collection stored in Milvus (``store`` searches through the collection's alias)."""

    def __init__(self, info: CollectionInfo, embedder: SerialEmbedder, store: MilvusStore) -> None:
        super().__init__(info, embedder)
        self.store = store
        self._changes: list[_Change] | None = None  # recorded while a re-index of this process builds

    @property
    def snapshot(self) -> Snapshot:
        return Snapshot(store=self.store, version=self.store.version)

    def upsert(self, record: ItemRecord, vector: np.ndarray) -> bool:
        with self.mutation_lock:
            replaced = self.store.upsert(record, vector)
            if self._changes is not None:
                self._changes.append(_Change(record.external_id, record, np.asarray(vector, np.float32)))
        return replaced

    def delete(self, external_id: str) -> bool:
        with self.mutation_lock:
            deleted = self.store.delete(external_id)
            if deleted and self._changes is not None:
                self._changes.append(_Change(external_id))
        return deleted

    def change_mark(self) -> ChangeMark:
        """Start recording this process's changes (for the re-index that asks); the mark is where it starts."""
        with self.mutation_lock:
            if self._changes is None:
                self._changes = []
            return ChangeMark(self.store.version, len(self._changes))

    def forget_mark(self, since: ChangeMark) -> None:
        with self.mutation_lock:
            self._changes = None

    def publish(self, vectors: np.ndarray, records: Sequence[ItemRecord], *, since: ChangeMark,
                source: str) -> tuple[int, str]:
        """Make (vectors, records) the collection's contents with the changes accepted after ``since`` carried
        over; returns (items live, version). Searches answer from the old version until the alias moves; this
        process's upserts and deletes wait only while the changes are repeated and the alias moves."""
        held = False

        def carry_over(new: MilvusStore) -> None:
            nonlocal held
            self.mutation_lock.acquire()  # released once the alias has moved (or the swap failed)
            held = True
            for change in (self._changes or [])[since.seq:]:
                if change.record is None:
                    new.delete(change.external_id)
                elif change.vector is not None:
                    new.upsert(change.record, change.vector)

        try:
            version = self.store.reindex(vectors, records, embedder_sha256=self.info.embedder_sha256,
                                         source=source, before_swap=carry_over)
            self._changes = None
        finally:
            if held:
                self.mutation_lock.release()
        return len(self.store), version

    def summary(self) -> CollectionState:
        return CollectionState(name=self.name, modality=self.info.modality, status="ready", size=len(self.store),
                               dim=self.embedder.dim, embedder_sha256=self.info.embedder_sha256,
                               embedder_origin=self.info.embedder_origin, version=self.store.version,
                               index_type=f"milvus {self.store.info.index_type}", index=None)


def create_milvus_store(client: MilvusClient, info: CollectionInfo) -> MilvusStore:
    """The empty Milvus collection of a new arcsearch collection ``info`` (its folder made already);
    CollectionExistsError if Milvus has one of that name, BackendUnavailableError for any other failure."""
    try:
        return MilvusStore.create(client, info.name, np.zeros((0, info.embedding_dim), np.float32), [],
                                  modality=info.modality, embedder_sha256=info.embedder_sha256, source="empty")
    except MilvusStoreError as exc:
        raise CollectionExistsError(str(exc)) from None
    except Exception as exc:  # pymilvus raises MilvusException (and grpc errors) for a server that fails
        raise BackendUnavailableError(f"Milvus did not create collection {info.name!r}: {type(exc).__name__}: "
                                      f"{exc}") from None


def drop_milvus_store(client: MilvusClient, name: str) -> None:
    """Remove collection ``name``'s Milvus collection, every version of it (nothing if there is none)."""
    if MilvusStore.exists(client, name):
        MilvusStore.open(client, name).drop()


def load_milvus_collection(collections_dir: Path, info: CollectionInfo, client: MilvusClient, *, device: str,
                           verify_hash: bool = True, embedders: dict[str, SerialEmbedder] | None = None,
                           threads: ThreadPolicy | None = None, consistency: Consistency = "Strong",
                           ef: int = HNSW_MIN_EF) -> MilvusCollection:
    """Load a Milvus collection's embedder and open its Milvus collection, read with ``consistency`` and HNSW
    ``ef``; refuses one stored with another embedder (EmbedderMismatchError) or missing in Milvus
    (MilvusStoreError)."""
    embedder = load_served_embedder(collections_dir, info, device=device, verify_hash=verify_hash,
                                    embedders=embedders, threads=threads)
    store = MilvusStore.open(client, info.name, consistency=consistency, ef=ef)
    if store.info.embedder_sha256 != info.embedder_sha256 or store.dim != info.embedding_dim:
        raise EmbedderMismatchError(f"Milvus collection {store.alias} was stored with embedder "
                                    f"{store.info.embedder_sha256[:12]} ({store.dim}-d), collection {info.name!r} "
                                    f"uses {info.embedder_sha256[:12]} ({info.embedding_dim}-d)")
    if store.info.modality != info.modality:
        raise MilvusStoreError(f"Milvus collection {store.alias} holds {store.info.modality}s, collection "
                               f"{info.name!r} {info.modality}s")
    logger.info("collection %r opened in Milvus: %s, version %s", info.name, info.modality, store.version)
    return MilvusCollection(info, embedder, store)
