"""The interface a collection's index offers the service, whichever store holds it.

``SearchBackend`` is what the read routes and the micro-batcher use (search, items, the page, thumbnails):
IndexStore (FAISS, one process) and MilvusStore (a Milvus collection, any number of processes) both satisfy it,
structurally; a served collection's ``Snapshot.store`` is one. ``MutableBackend`` adds what the write routes and
re-index jobs need of a store that changes in place: MilvusStore is one (service.core.milvus_collection uses it).
A FAISS collection changes at the collection level instead (service.core.collection logs each change beside the
bundle and publishes re-indexed versions by CURRENT), since IndexStore.upsert returns the FAISS id the change log
needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from arcsearch.index.hits import Hit
from arcsearch.index.items import ItemRecord


@runtime_checkable
class SearchBackend(Protocol):
    """Read access to one collection's vectors and items; scores are cosine similarities."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    @property
    def source(self) -> str:
        """The corpus its items were indexed from (a folder or a manifest file; "" if none): thumbnails resolve
        an item's ``source`` against it."""
        ...

    @property
    def supports_delete(self) -> bool:
        """Whether a deleted item's vector leaves the index (else it stays as a tombstone until a re-index)."""
        ...

    def search(self, queries: np.ndarray, k: int, *, label: str | None = None,
               metadata: dict[str, Any] | None = None, min_score: float | None = None,
               exclude: Sequence[str] = ()) -> list[list[Hit]]:
        """The ``k`` best hits of each of the (n, d) queries, best first; filters as IndexStore.search."""
        ...

    def get(self, external_id: str) -> ItemRecord | None: ...

    def page(self, after: str | None, limit: int) -> list[ItemRecord]:
        """Up to ``limit`` items with external ids after ``after`` (None: from the first), by external id."""
        ...

    def vector_of(self, external_id: str) -> np.ndarray | None:
        """The stored unit (d,) vector of an item, or None."""
        ...


@runtime_checkable
class MutableBackend(SearchBackend, Protocol):
    """A SearchBackend that also changes: items one by one, or all at once with an atomic swap."""

    def upsert(self, record: ItemRecord, vector: np.ndarray) -> bool:
        """Insert or replace ``record`` with its (d,) vector; True if it replaced an item."""
        ...

    def delete(self, external_id: str) -> bool:
        """Remove an item; False if there was none."""
        ...

    def reindex(self, vectors: np.ndarray, records: Sequence[ItemRecord], *, embedder_sha256: str,
                source: str = "") -> str:
        """Replace every item at once; searches answer from the old items until the new ones are all live.
        Refuses another embedder. Returns the new version's name."""
        ...
