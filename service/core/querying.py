"""The work of one micro-batch: embed every input of every query in one call, search all vectors at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from arcsearch.index.hits import Hit
from arcsearch.service.core.batching import PendingQuery

if TYPE_CHECKING:
    from arcsearch.service.core.collection import LoadedCollection

StageObserver = Callable[[str, float], None]  # (stage name, seconds)


@dataclass(frozen=True)
class SearchOptions:
    """Per-query search options; queries of one batch with equal options share one FAISS search."""

    label: str | None = None
    metadata: tuple[tuple[str, Any], ...] = ()
    min_score: float | None = None
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, min_score: float | None, search_filter: Any, exclude: tuple[str, ...] = ()) -> SearchOptions:
        if search_filter is None:
            return cls(min_score=min_score, exclude=exclude)
        return cls(label=search_filter.label, metadata=tuple(sorted(search_filter.metadata.items())),
                   min_score=min_score, exclude=exclude)


NO_OPTIONS = SearchOptions()


@dataclass(frozen=True)
class QueryAnswer:
    """The answer to one query: the index version that answered and the hits of each of its inputs."""

    version: str | None
    hits: list[list[Hit]]


def _noop(_: str, __: float) -> None:
    return None


def embed_and_search(collection: LoadedCollection, batch: list[PendingQuery],
                     observe_stage: StageObserver = _noop) -> list[QueryAnswer]:
    """One forward pass over all inputs of ``batch`` and one search with the largest ``k``; split per query."""
    inputs = [item for query in batch for item in query.inputs]
    started = time.perf_counter()
    if collection.info.modality == "image":
        vectors = collection.embedder.embed_images(list(inputs), batch_size=max(1, len(inputs)))
    else:
        vectors = collection.embedder.embed_texts(list(inputs), batch_size=max(1, len(inputs)))
    observe_stage("embed", time.perf_counter() - started)
    return search_vectors(collection, batch, vectors, observe_stage)


def search_vectors(collection: LoadedCollection, batch: list[PendingQuery], vectors: np.ndarray,
                   observe_stage: StageObserver = _noop) -> list[QueryAnswer]:
    """Search the stacked vectors of ``batch``: one FAISS call per distinct set of options (usually one)."""
    started = time.perf_counter()
    snapshot = collection.snapshot  # one read: a concurrent swap cannot mix two versions in one answer
    starts = np.cumsum([0] + [len(q.inputs) for q in batch])
    groups: dict[SearchOptions, list[int]] = {}
    for position, query in enumerate(batch):
        groups.setdefault(query.options or NO_OPTIONS, []).append(position)
    rows_of: dict[int, list[list[Hit]]] = {}
    for options, positions in groups.items():
        if snapshot.store is None:
            for position in positions:
                rows_of[position] = [[] for _ in range(len(batch[position].inputs))]
            continue
        picked = np.concatenate([vectors[starts[p]:starts[p + 1]] for p in positions])
        collection.search_threads.apply(len(picked))  # per thread: this is the thread that searches
        rows = snapshot.store.search(picked, max(batch[p].k for p in positions), label=options.label,
                                     metadata=dict(options.metadata), min_score=options.min_score,
                                     exclude=options.exclude)
        offset = 0
        for position in positions:
            count = len(batch[position].inputs)
            rows_of[position] = [row[:batch[position].k] for row in rows[offset:offset + count]]
            offset += count
    observe_stage("search", time.perf_counter() - started)
    return [QueryAnswer(snapshot.version, rows_of[position]) for position in range(len(batch))]
