"""A collection stored in Milvus: build, search, get / upsert / delete by id, and re-index with an atomic swap.

Layout in Milvus (names in index.milvus_names): the Milvus alias ``arcsearch_<name>`` always names the live
version, a Milvus collection of five fields::

    external_id VARCHAR primary key | label VARCHAR | source VARCHAR | metadata JSON | vector FLOAT_VECTOR(d)

whose description holds ``MilvusCollectionInfo`` as JSON (modality, dimension, the embedder's weights hash, the
index type). Vectors are stored L2-normalised and searched by inner product, so scores are cosine similarities
as in the FAISS store. Reads are Strong by default (``Consistency`` below): a search or get through any client
connection sees every upsert and delete that returned before it. Re-indexing builds and loads a new version, then
moves the alias to it (one Milvus call), then drops the old one: searches through the alias answer throughout.
Needs the ``[milvus]`` extra (pymilvus); nothing here starts a server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import ValidationError

from arcsearch.index.bundle import Modality
from arcsearch.index.faiss_index import normalise, unit_queries
from arcsearch.index.hits import Hit
from arcsearch.index.items import ItemRecord
from arcsearch.index.milvus_build import IndexType, MilvusCollectionInfo, build_version, row_of
from arcsearch.index.milvus_names import (
    MilvusStoreError,
    alias_for,
    filter_expression,
    ids_expression,
    is_version_of,
    literal,
    new_version_name,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

logger = logging.getLogger(__name__)

MAX_TOP_K = 16384  # Milvus's limit on k (and on queries per search)
STALE_VERSION_S = 6 * 3600  # a version older than this that no alias names is left over from a crash
OUTPUT_FIELDS = ["label", "source", "metadata"]
# Strong: a read sees every write that returned before it, through any connection (what stateless API replicas
# need), at the price of waiting for the server's next time tick (proxy.timeTickInterval: ~250 ms a search at
# Milvus's default 200 ms, ~40 ms at the tests' 20 ms). Bounded: ~3 ms, but may miss writes of the last seconds.
Consistency = Literal["Strong", "Bounded", "Session", "Eventually"]
HNSW_MIN_EF = 64  # the default HNSW ef of a search (raised to k when k is larger)


def connect(uri: str, *, token: str = "", timeout_s: float = 30.0) -> MilvusClient:
    """A pymilvus client for the Milvus server (or cluster proxy) at ``uri``, e.g. ``http://127.0.0.1:19530``."""
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri, token=token, timeout=timeout_s)


def _record(row: dict[str, Any]) -> ItemRecord:
    return ItemRecord(row["external_id"], label=row["label"], source=row["source"], metadata=row["metadata"] or {})


class MilvusStore:
    """One arcsearch collection in Milvus, reached through its alias; safe to share between threads."""

    def __init__(self, client: MilvusClient, name: str, info: MilvusCollectionInfo, *,
                 consistency: Consistency = "Strong", ef: int = HNSW_MIN_EF) -> None:
        self.client = client
        self.name = name
        self.alias = alias_for(name)
        self.info = info
        self.consistency = consistency
        self.ef = ef  # HNSW ef of searches (at least k)

    @classmethod
    def create(cls, client: MilvusClient, name: str, vectors: np.ndarray, records: Sequence[ItemRecord], *,
               modality: Modality, embedder_sha256: str, index_type: IndexType = "FLAT",
               source: str = "", build_params: dict[str, int] | None = None) -> MilvusStore:
        """Build the first version of collection ``name`` and point its alias at it; refuses an existing name.
        ``build_params`` replaces the index type's default build parameters (e.g. HNSW ``M``, ``efConstruction``)."""
        alias = alias_for(name)
        if cls.exists(client, name):
            raise MilvusStoreError(f"collection {name!r} already exists in Milvus (alias {alias})")
        info = MilvusCollectionInfo(modality=modality, embedding_dim=int(np.shape(vectors)[-1]),
                                    embedder_sha256=embedder_sha256, index_type=index_type, source=source)
        version = new_version_name(alias)
        build_version(client, version, vectors, records, info, build_params=build_params)
        try:
            client.create_alias(version, alias)
        except Exception as exc:  # pymilvus raises MilvusException; another process may have created it first
            client.drop_collection(version)
            raise MilvusStoreError(f"cannot create alias {alias} for collection {name!r}: {exc}") from exc
        return cls(client, name, info)

    @classmethod
    def open(cls, client: MilvusClient, name: str, *, consistency: Consistency = "Strong",
             ef: int = HNSW_MIN_EF) -> MilvusStore:
        """The collection ``name`` as its live version describes it, read with ``consistency`` and HNSW ``ef``;
        MilvusStoreError if there is none."""
        if not cls.exists(client, name):
            raise MilvusStoreError(f"collection {name!r} does not exist in Milvus")
        description = client.describe_collection(alias_for(name)).get("description", "")
        try:
            return cls(client, name, MilvusCollectionInfo.model_validate_json(description), consistency=consistency,
                       ef=ef)
        except ValidationError as exc:
            raise MilvusStoreError(f"Milvus collection {alias_for(name)} is not an arcsearch collection: {exc}") \
                from exc

    @staticmethod
    def exists(client: MilvusClient, name: str) -> bool:
        """Whether collection ``name`` has a live version (its alias exists)."""
        alias = alias_for(name)
        return any(alias in client.list_aliases(c).get("aliases", []) for c in client.list_collections()
                   if is_version_of(c, alias))

    @property
    def dim(self) -> int:
        return self.info.embedding_dim

    @property
    def source(self) -> str:
        return self.info.source

    @property
    def supports_delete(self) -> bool:
        return True

    def at_version(self, version: str) -> MilvusStore:
        """This collection's version ``version`` (a Milvus collection, e.g. one not yet live) as a store."""
        store = MilvusStore(self.client, self.name, self.info, consistency=self.consistency, ef=self.ef)
        store.alias = version  # every call addresses self.alias
        return store

    @property
    def version(self) -> str:
        """The Milvus collection that the alias names now."""
        return str(self.client.describe_alias(self.alias)["collection_name"])

    def __len__(self) -> int:
        rows = self._query("", ["count(*)"])
        return int(rows[0]["count(*)"])

    def search(self, queries: np.ndarray, k: int, *, label: str | None = None,
               metadata: dict[str, Any] | None = None, min_score: float | None = None,
               exclude: Sequence[str] = ()) -> list[list[Hit]]:
        """The ``k`` nearest items of each of the (n, d) queries, best first, as IndexStore.search: only items
        with ``label`` and every ``metadata`` value, none of ``exclude``; hits below ``min_score`` dropped."""
        unit = unit_queries(queries, k, dim=self.dim, max_k=MAX_TOP_K, error=MilvusStoreError)
        if len(unit) == 0:
            return []
        params = {"ef": max(k, self.ef)} if self.info.index_type == "HNSW" else {}
        answers = self.client.search(self.alias, data=unit.tolist(), limit=k, anns_field="vector",
                                     filter=filter_expression(label, metadata, exclude), output_fields=OUTPUT_FIELDS,
                                     search_params={"metric_type": "IP", "params": params},
                                     consistency_level=self.consistency)
        floor = -np.inf if min_score is None else min_score
        return [[Hit(external_id=hit["id"], score=float(hit["distance"]), label=hit["entity"]["label"],
                     source=hit["entity"]["source"], metadata=hit["entity"]["metadata"] or {})
                 for hit in hits if hit["distance"] >= floor] for hits in answers]

    def get(self, external_id: str) -> ItemRecord | None:
        rows = self._query(ids_expression([external_id]), ["external_id", *OUTPUT_FIELDS])
        return _record(rows[0]) if rows else None

    def vector_of(self, external_id: str) -> np.ndarray | None:
        """The stored (unit) vector of an item, or None if there is no such item."""
        rows = self._query(ids_expression([external_id]), ["vector"])
        return np.asarray(rows[0]["vector"], np.float32) if rows else None

    def page(self, after: str | None, limit: int) -> list[ItemRecord]:
        """Up to ``limit`` items whose external ids come after ``after`` (None: from the first), by external id."""
        where = 'external_id >= ""' if after is None else f"external_id > {literal(after, field='after')}"
        # Milvus returns the smallest primary keys that match when given a limit (test_page_walks_items_in_id_order)
        rows = self._query(where, ["external_id", *OUTPUT_FIELDS], limit=limit)
        return sorted((_record(row) for row in rows), key=lambda record: record.external_id)

    def _query(self, where: str, fields: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        return list(self.client.query(self.alias, filter=where, output_fields=fields,
                                      consistency_level=self.consistency, **kwargs))

    def upsert(self, record: ItemRecord, vector: np.ndarray) -> bool:
        """Insert or replace ``record`` with its (d,) vector; True if it replaced an item."""
        unit = normalise(np.asarray(vector, np.float32).reshape(1, -1))
        if unit.shape[1] != self.dim:
            raise MilvusStoreError(f"vector has dimension {unit.shape[1]}, the index {self.dim}")
        replaced = self.get(record.external_id) is not None
        self.client.upsert(self.alias, [row_of(record, unit[0])])
        return replaced

    def delete(self, external_id: str) -> bool:
        """Remove an item; False if there is none with that id."""
        if self.get(external_id) is None:
            return False
        self.client.delete(self.alias, filter=ids_expression([external_id]))
        return True

    def reindex(self, vectors: np.ndarray, records: Sequence[ItemRecord], *, embedder_sha256: str,
                source: str = "", before_swap: Callable[[MilvusStore], object] | None = None) -> str:
        """Replace the whole collection: build and load a new version, call ``before_swap`` with it (e.g. to
        carry over changes made meanwhile), move the alias to it, drop the old one.

        Searches through the alias answer from the old version until the alias moves, then from the new one.
        Upserts and deletes made while the new version is built go to the old one and are lost unless
        ``before_swap`` repeats them. Returns the new version's Milvus collection name.
        """
        if embedder_sha256 != self.info.embedder_sha256:
            raise MilvusStoreError(f"collection {self.name!r} uses embedder {self.info.embedder_sha256[:12]}, "
                                   f"not {embedder_sha256[:12]}; use a new collection")
        old = self.version
        self._drop_stale_versions(keep={old})
        info = self.info.model_copy(update={"source": source})
        new = new_version_name(self.alias)
        build_version(self.client, new, vectors, records, info)
        try:
            if before_swap is not None:
                before_swap(self.at_version(new))
            self.client.alter_alias(new, self.alias)
        except BaseException:
            self.client.drop_collection(new)
            raise
        self.info = info
        self.client.drop_collection(old)
        logger.info("re-indexed %r: alias %s moved from %s to %s", self.name, self.alias, old, new)
        return new

    def drop(self) -> None:
        """Remove the collection: its alias and every version of it."""
        versions = [c for c in self.client.list_collections() if is_version_of(c, self.alias)]
        if self.exists(self.client, self.name):
            self.client.drop_alias(self.alias)
        for version in versions:
            self.client.drop_collection(version)

    def _drop_stale_versions(self, *, keep: set[str]) -> None:
        """Drop versions left by a crashed build (no alias names them and they are older than STALE_VERSION_S)."""
        now_ns = time.time_ns()
        for collection in self.client.list_collections():
            if collection in keep or not is_version_of(collection, self.alias):
                continue
            stamp_ns = int(collection[len(self.alias) + 2:].split("_")[0])
            if now_ns - stamp_ns > STALE_VERSION_S * 1e9 and not self.client.list_aliases(collection)["aliases"]:
                logger.warning("dropping %s, left over from an unfinished re-index", collection)
                self.client.drop_collection(collection)
