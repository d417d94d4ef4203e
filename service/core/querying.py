"""The work of one micro-batch: embed every input of every query in one call, search all vectors at once; and
the queue of a collection's vector queries, which need no embedding but are searched together all the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from arcsearch.index.hits import Hit
from arcsearch.service.core.batching import SUBMIT_TIMEOUT_S, BatcherClosedError, MicroBatcher, PendingQuery
from arcsearch.service.core.errors import NotReadyError

if TYPE_CHECKING:
    from arcsearch.service.core.served import ServedCollection

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


def embed_and_search(collection: ServedCollection, batch: list[PendingQuery],
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


def search_vectors(collection: ServedCollection, batch: list[PendingQuery], vectors: np.ndarray,
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


def alone(search: Callable[[list[PendingQuery]], list[QueryAnswer]], query: PendingQuery) -> QueryAnswer | Exception:
    """``query`` searched by itself: its answer, or the exception its search raised."""
    try:
        return search([query])[0]
    except Exception as exc:  # handed to this query's caller, who raises it
        return exc


class VectorQueue:
    """A collection's vector queries, searched by one worker thread: each query it finds waiting when it takes
    one joins the same FAISS search (one call per distinct set of options), never waiting for more.

    Vectors need no forward pass, so they skip the embedder's micro-batcher (no wait behind a text batch being
    embedded), but not the hop off the event loop: FAISS must not block it. A hop per request costs a thread
    wake-up each way, which on 2 busy cores was worth more than the search itself; queries that pile up while
    the worker searches share one hop back and one item lookup, so under load the cost per query falls (and a
    batch of ``SearchThreads.parallel_min_batch`` or more is searched on several cores). If a shared search
    fails, each of its queries is searched alone, so that one query's error is its own.
    """

    def __init__(self, collection: ServedCollection, *, max_batch: int) -> None:
        def search(batch: list[PendingQuery]) -> list[QueryAnswer]:
            stacked = np.concatenate([np.asarray(query.inputs, np.float32) for query in batch])
            return search_vectors(collection, batch, stacked, collection.observe_stage)

        def process(batch: list[PendingQuery]) -> list[QueryAnswer | Exception]:
            try:
                return list(search(batch))
            except Exception:
                if len(batch) == 1:
                    raise
            return [alone(search, query) for query in batch]

        self.batcher = MicroBatcher(f"{collection.name}/vectors", process, max_batch=max_batch, max_wait_ms=0)

    async def query(self, vectors: np.ndarray, k: int, options: SearchOptions | None = None) -> QueryAnswer:
        """Search (n, dim) ``vectors`` with the queries waiting beside them; NotReadyError once closed."""
        try:
            future = self.batcher.enqueue(vectors, k, options)
        except BatcherClosedError:
            raise NotReadyError("the service is shutting down; retry on another instance") from None
        answer = await self.batcher.answer(asyncio.wrap_future(future), timeout_s=SUBMIT_TIMEOUT_S)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        """Answer what is queued, then stop the worker."""
        self.batcher.close()
