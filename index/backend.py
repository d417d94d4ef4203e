"""The interface a collection's index offers the service, whichever store holds it.

``SearchBackend`` is what the read routes and the micro-batcher use (search, items, the page, thumbnails):
IndexStore (FAISS, one process) and MilvusStore (a Milvus collection, any number of processes) both satisfy it,
structurally; a served collection's ``Snapshot.store`` is one. Writes differ too much to share an interface and
live one level up, in the served collection (service.core.served): a FAISS collection logs each change beside its
bundle (IndexStore.upsert returns the FAISS id the log needs) and publishes re-indexed versions by CURRENT; a
Milvus collection writes through MilvusStore and re-indexes by moving an alias.
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
