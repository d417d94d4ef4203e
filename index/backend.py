"""The backend interface a collection's index offers the service, whichever store holds it (a proposal).

``SearchBackend`` is what the read routes use (search, the item routes, the page); IndexStore (FAISS) and
MilvusStore both satisfy it today, structurally. ``MutableBackend`` adds what the write routes and re-index jobs
need: for Milvus that is MilvusStore itself; for FAISS it is the collection level (service.collection's
LoadedCollection logs each change beside the bundle and publishes re-indexed versions by CURRENT), since
IndexStore.upsert returns the FAISS id the change log needs. Nothing uses these yet.
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
