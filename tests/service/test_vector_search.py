"""Vector searches of a collection: FAISS's OpenMP threads come from the settings and are set in the thread that
searches (OpenMP keeps them per thread); vector queries skip the embedder's micro-batcher, and those that wait
while the collection's vector worker searches share its next search."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import faiss
import numpy as np
from fastapi.testclient import TestClient

from arcsearch.index.hits import Hit
from arcsearch.index.threads import SearchThreads
from arcsearch.service.app import create_app
from arcsearch.service.core.collection import Snapshot
from arcsearch.service.core.querying import VectorQueue
from tests.index.test_threads import in_fresh_thread
from tests.service.helpers import ServiceData, local_client, service_settings, wait_ready


def test_faiss_threads_come_from_the_settings_and_are_set_in_the_searching_thread(service_data: ServiceData) -> None:
    app = create_app(service_settings(service_data, faiss_threads=3, faiss_parallel_min_batch=2))
    with local_client(app) as client:
        wait_ready(client)
        images = app.state.registry.get("images")
        assert images.search_threads == SearchThreads(threads=3, parallel_min_batch=2)
        vectors = np.random.default_rng(0).standard_normal((2, images.embedder.dim)).astype(np.float32)

        def threads_after_search(rows: int) -> int:
            faiss.omp_set_num_threads(7)  # FAISS's default would be a thread per core
            assert len(images.query_vectors(vectors[:rows], 3).hits[0]) == 3
            return faiss.omp_get_max_threads()

        assert in_fresh_thread(lambda: threads_after_search(1)) == 1
        assert in_fresh_thread(lambda: threads_after_search(2)) == 3


def test_vector_queries_skip_the_embedders_micro_batcher(client: TestClient) -> None:
    images = client.app.state.registry.get("images")  # type: ignore[attr-defined]
    embedded, searched = images.batcher.queries, images.vector_queue.batcher.queries
    response = client.post("/v1/collections/images/search", json={"vectors": [[0.5] * 128, [-0.5] * 128], "k": 3})
    assert response.status_code == 200 and [len(q["hits"]) for q in response.json()["queries"]] == [3, 3]
    assert images.batcher.queries == embedded and images.vector_queue.batcher.queries == searched + 1


class HeldStore:
    """A fake index: each search records its size and waits for ``release``; a query vector starting with -1
    makes the search fail; each hit's id is the query's first value."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def search(self, queries: np.ndarray, k: int, **_: Any) -> list[list[Hit]]:
        self.sizes.append(len(queries))
        self.entered.set()
        assert self.release.wait(60), "the test never released the search"
        if (queries[:, 0] == -1).any():
            raise ValueError("a query this index refuses")
        return [[Hit(external_id=str(int(q[0])), score=1.0)] for q in queries]


def fake_collection(store: HeldStore) -> SimpleNamespace:
    return SimpleNamespace(name="fake", snapshot=Snapshot(store=store, version="v1"),  # type: ignore[arg-type]
                           search_threads=SearchThreads(parallel_min_batch=0), observe_stage=lambda *_: None)


async def queued_while_searching(queue: VectorQueue, store: HeldStore, firsts: list[float]) -> list[Any]:
    """One query, then ``firsts`` queued while the worker searches it; every answer (or exception), in order."""
    running = asyncio.ensure_future(queue.query(np.array([[7.0, 0.0]], np.float32), 1))
    while not store.entered.is_set():
        await asyncio.sleep(0.01)
    waiting = [asyncio.ensure_future(queue.query(np.array([[first, 0.0]], np.float32), 1)) for first in firsts]
    await asyncio.sleep(0)  # each waiting query enqueues at its first step
    store.release.set()
    return await asyncio.gather(running, *waiting, return_exceptions=True)


def test_vector_queries_waiting_while_the_worker_searches_share_one_search() -> None:
    store = HeldStore()
    queue = VectorQueue(fake_collection(store), max_batch=32)  # type: ignore[arg-type]
    try:
        answers = asyncio.run(queued_while_searching(queue, store, [1.0, 2.0, 3.0]))
    finally:
        queue.close()
    assert store.sizes == [1, 3]
    assert [answer.hits[0][0].external_id for answer in answers] == ["7", "1", "2", "3"]


def test_a_query_that_fails_a_shared_search_fails_alone() -> None:
    store = HeldStore()
    queue = VectorQueue(fake_collection(store), max_batch=32)  # type: ignore[arg-type]
    try:
        answers = asyncio.run(queued_while_searching(queue, store, [1.0, -1.0, 3.0]))
    finally:
        queue.close()
    assert store.sizes == [1, 3, 1, 1, 1]
    assert isinstance(answers[2], ValueError)
    assert [answers[i].hits[0][0].external_id for i in (0, 1, 3)] == ["7", "1", "3"]
