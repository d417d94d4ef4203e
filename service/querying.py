"""The work of one micro-batch: embed every input of every query in one call, search all vectors at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from index.store import Hit
from service.batching import PendingQuery

if TYPE_CHECKING:
    from service.registry import LoadedCollection

StageObserver = Callable[[str, float], None]  # (stage name, seconds)


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
    """Search the stacked vectors of ``batch`` in one call; row order follows the queries' inputs."""
    started = time.perf_counter()
    k = max(query.k for query in batch)
    version, rows = collection.search(vectors, k)
    observe_stage("search", time.perf_counter() - started)
    answers, start = [], 0
    for query in batch:
        end = start + len(query.inputs)
        answers.append(QueryAnswer(version, [row[:query.k] for row in rows[start:end]]))
        start = end
    return answers
