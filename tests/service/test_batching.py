"""Micro-batching: concurrent queries share forward passes, answers go to the right caller, errors too."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from arcsearch.service.core.batching import BatcherClosedError, MicroBatcher, PendingQuery
from arcsearch.service.core.errors import OverloadedError
from tests.service.helpers import ServiceData, assert_error

CONCURRENT = 16
TEXTS = "/v1/collections/texts/search"


class SlowDoubler:
    """A fake forward pass: doubles every input, takes 20 ms per batch, records the batch sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, batch: list[PendingQuery]) -> list[Any]:
        time.sleep(0.02)
        self.sizes.append(sum(len(q.inputs) for q in batch))
        if any(x == "boom" for q in batch for x in q.inputs):
            raise ValueError("boom")
        return [[2 * x for x in q.inputs][:q.k] for q in batch]


def test_concurrent_queries_are_batched_and_answered_in_order() -> None:
    process = SlowDoubler()
    observed: list[tuple[int, int]] = []
    batcher = MicroBatcher("t", process, max_batch=8, max_wait_ms=50, observe=lambda q, n: observed.append((q, n)))
    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(lambda i: batcher.submit([i, i + 100], k=2), range(CONCURRENT)))
    assert answers == [[2 * i, 2 * (i + 100)] for i in range(CONCURRENT)]
    assert batcher.queries == CONCURRENT and batcher.batches < CONCURRENT / 2
    assert max(process.sizes) <= 8 and sum(process.sizes) == 2 * CONCURRENT
    assert [n for _, n in observed] == process.sizes
    batcher.close()
    with pytest.raises(BatcherClosedError):
        batcher.submit([1], k=1)


def test_wait_idle_returns_at_once_when_idle_and_after_the_running_batch_otherwise() -> None:
    release = threading.Event()

    def slow(batch: list[PendingQuery]) -> list[Any]:
        release.wait(5)
        return [list(q.inputs) for q in batch]

    batcher = MicroBatcher("t", slow, max_batch=4, max_wait_ms=0)
    assert batcher.wait_idle(0.0)  # nothing queued, no worker yet
    future = batcher.enqueue([1], k=1)
    started = time.monotonic()
    assert not batcher.wait_idle(0.1)  # the batch is still running: gives up after the timeout
    assert 0.09 <= time.monotonic() - started < 2
    threading.Timer(0.2, release.set).start()
    assert batcher.wait_idle(5)
    assert future.done() and future.result() == [1]
    batcher.close()


def test_an_error_reaches_every_query_of_its_batch_and_the_worker_survives() -> None:
    batcher = MicroBatcher("t", SlowDoubler(), max_batch=64, max_wait_ms=5_000)
    with contextlib.ExitStack() as stack:  # all four announced first, so the worker waits for all of them
        arrivals = [stack.enter_context(batcher.arriving()) for _ in range(4)]
        futures = [batcher.enqueue([x], 1, arrival=a) for x, a in zip(("boom", 1, 2, 3), arrivals, strict=True)]
    errors = [f.exception(timeout=10) for f in futures]
    assert all(isinstance(e, ValueError) for e in errors), errors  # one batch: all four share the failure
    assert batcher.submit([5], k=1) == [10]
    batcher.close()


def test_a_lone_query_waits_at_most_max_wait() -> None:
    batcher = MicroBatcher("t", lambda batch: [q.inputs for q in batch], max_batch=64, max_wait_ms=30)
    started = time.perf_counter()
    assert batcher.submit(["x"], k=1) == ["x"]
    assert time.perf_counter() - started < 1.0
    batcher.close()


def test_a_lone_query_does_not_wait_when_nothing_is_on_its_way() -> None:
    process = SlowDoubler()
    batcher = MicroBatcher("t", process, max_batch=64, max_wait_ms=5_000)
    started = time.perf_counter()
    assert batcher.submit([1], k=1) == [2]
    assert time.perf_counter() - started < 2.5  # not the 5 s window
    batcher.close()


def test_a_batch_waits_for_a_query_on_its_way_and_not_after_it_is_withdrawn() -> None:
    process = SlowDoubler()
    batcher = MicroBatcher("t", process, max_batch=64, max_wait_ms=5_000)
    with batcher.arriving() as arrival:
        first = batcher.enqueue([1], k=1)
        time.sleep(0.2)  # the worker holds the batch open for the announced query
        assert not first.done()
        second = batcher.enqueue([2], k=1, arrival=arrival)
        assert [first.result(timeout=5), second.result(timeout=5)] == [[2], [4]]
    assert process.sizes == [2]  # one forward pass for both
    with batcher.arriving():
        pass  # withdrawn without a query (a request that failed to decode): nobody waits for it
    started = time.perf_counter()
    assert batcher.submit([3], k=1) == [6]
    assert time.perf_counter() - started < 2.5
    batcher.close()


def test_image_searches_announce_their_arrival_and_withdraw_it_on_failure(client: TestClient,
                                                                          service_data: ServiceData) -> None:
    batcher = client.app.state.registry.get("images").batcher  # type: ignore[attr-defined]
    bad = client.post("/v1/collections/images/search", files={"file": ("x.png", b"not an image", "image/png")})
    assert_error(bad, 415, "unsupported_media_type")
    assert batcher.arrivals == 0  # a failed request leaves nothing for later batches to wait for
    image = service_data.faces_dir.joinpath("s1", "1.pgm").read_bytes()
    good = client.post("/v1/collections/images/search", files={"file": ("1.pgm", image, "image/x-portable-graymap")})
    assert good.status_code == 200 and good.json()["queries"][0]["hits"][0]["label"] == "s1"
    assert batcher.arrivals == 0


def test_concurrent_http_queries_share_forward_passes(client: TestClient, service_data: ServiceData) -> None:
    """16 concurrent text searches through the app: fewer forward passes than requests, same answers."""
    batcher = client.app.state.registry.get("texts").batcher  # type: ignore[attr-defined]
    texts = [q["text"] for q in service_data.query_texts[:CONCURRENT]]
    alone = [client.post(TEXTS, json={"text": t, "k": 3}).json()["queries"][0]["hits"] for t in texts]
    batcher.max_wait_s, before = 0.2, batcher.batches
    barrier = threading.Barrier(CONCURRENT)

    def search(text: str) -> Any:
        barrier.wait(10)
        return client.post(TEXTS, json={"text": text, "k": 3}).json()["queries"][0]["hits"]

    try:
        with ThreadPoolExecutor(CONCURRENT) as pool:
            together = list(pool.map(search, texts))
    finally:
        batcher.max_wait_s = 0.002
    assert batcher.batches - before < CONCURRENT / 2, f"{batcher.batches - before} passes for {CONCURRENT}"
    assert [[h["id"] for h in r] for r in together] == [[h["id"] for h in r] for r in alone]
    for got, want in zip(together, alone, strict=True):
        assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], abs=1e-4)


def test_queries_after_shutdown_get_503(client: TestClient) -> None:
    collection = client.app.state.registry.get("texts")  # type: ignore[attr-defined]
    live, closed = collection.batcher, MicroBatcher("closed", lambda batch: [], max_batch=1, max_wait_ms=0)
    closed.close()
    collection.batcher = closed
    try:
        assert_error(client.post(TEXTS, json={"text": "a dog"}), 503, "not_ready")
    finally:
        collection.batcher = live


def test_a_cancelled_query_is_dropped_and_the_worker_lives_on() -> None:
    gate = threading.Event()

    def process(batch: list[PendingQuery]) -> list[Any]:
        gate.wait(5)
        return [list(q.inputs) for q in batch]

    batcher = MicroBatcher("c", process, max_batch=1, max_wait_ms=0)
    first = batcher.enqueue([1], k=1)
    deadline = time.monotonic() + 5
    while not first.running():  # the worker took it and waits at the gate
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = batcher.enqueue([2], k=1)
    assert second.cancel()  # e.g. an async handler that timed out
    gate.set()
    assert first.result(timeout=5) == [1]
    assert batcher.submit([3], k=1, timeout_s=5) == [3]
    assert batcher.queries == 2
    batcher.close()


class Gate:
    """A fake forward pass that waits at a gate (as a long batch would), then echoes the inputs."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def __call__(self, batch: list[PendingQuery]) -> list[Any]:
        self.open.wait(10)
        return [list(q.inputs) for q in batch]


def wait_running(future: Any) -> None:
    deadline = time.monotonic() + 5
    while not future.running():  # the worker took it and waits at the gate
        assert time.monotonic() < deadline
        time.sleep(0.01)


def assert_overloaded(exc: BaseException) -> None:
    """The batcher's refusal is OverloadedError, which the edge answers 503 ``overloaded`` with Retry-After."""
    from arcsearch.service.errors import domain_status, retry_after_header

    assert isinstance(exc, OverloadedError) and domain_status(exc) == (503, "overloaded"), exc
    assert int(retry_after_header(exc.retry_after_s)["Retry-After"]) >= 1


def test_a_full_queue_refuses_more_inputs_with_503() -> None:
    gate = Gate()
    batcher = MicroBatcher("q", gate, max_batch=1, max_wait_ms=0)
    running = batcher.enqueue([1], k=1)
    wait_running(running)
    batcher.check_room(5, max_queued_inputs=3)  # an empty queue takes any one query
    queued = batcher.enqueue([2, 3], k=1)
    assert batcher.queued_inputs == 2
    batcher.check_room(1, max_queued_inputs=3)  # fits
    with pytest.raises(Exception) as caught:
        batcher.check_room(2, max_queued_inputs=3)
    assert_overloaded(caught.value)
    gate.open.set()
    assert running.result(timeout=5) == [1] and queued.result(timeout=5) == [2, 3]
    assert batcher.queued_inputs == 0
    batcher.close()


def test_an_answer_that_takes_too_long_is_a_503_and_the_query_is_dropped() -> None:
    gate = Gate()
    batcher = MicroBatcher("t", gate, max_batch=1, max_wait_ms=0)
    running = batcher.enqueue([1], k=1)
    wait_running(running)
    waiting = batcher.enqueue([2], k=1)

    async def wait_for_it() -> Any:
        return await batcher.answer(asyncio.wrap_future(waiting), timeout_s=0.05)

    with pytest.raises(Exception) as caught:
        asyncio.run(wait_for_it())
    assert_overloaded(caught.value)
    with pytest.raises(Exception) as caught:
        batcher.submit([3], k=1, timeout_s=0.05)
    assert_overloaded(caught.value)
    assert waiting.cancelled()
    gate.open.set()
    assert running.result(timeout=5) == [1]
    assert batcher.submit([4], k=1, timeout_s=5) == [4]
    assert batcher.queries == 2  # the two that timed out were dropped, not embedded for nobody
    batcher.close()


@contextlib.contextmanager
def stuck_batcher(client: TestClient, name: str) -> Any:
    """The collection answers through a batcher whose forward pass waits at a gate until the block ends."""
    collection = client.app.state.registry.get(name)  # type: ignore[attr-defined]
    live, gate = collection.batcher, Gate()
    collection.batcher = MicroBatcher("stuck", gate, max_batch=1, max_wait_ms=0)
    try:
        yield collection.batcher
    finally:
        gate.open.set()
        collection.batcher.close()
        collection.batcher = live


def test_a_micro_batch_timeout_answers_503_over_http(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("arcsearch.service.core.served.SUBMIT_TIMEOUT_S", 0.3)
    with stuck_batcher(client, "texts"):
        response = client.post(TEXTS, json={"text": "a dog"})
        assert_error(response, 503, "overloaded")
        assert int(response.headers["retry-after"]) >= 1


def test_a_full_batch_queue_answers_503_over_http(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = client.app.state.settings  # type: ignore[attr-defined]
    monkeypatch.setattr(settings, "batch_max_queued_inputs", 2)
    with stuck_batcher(client, "texts") as batcher:
        wait_running(batcher.enqueue(["first"], k=1))
        batcher.enqueue(["second", "third"], k=1)
        response = client.post(TEXTS, json={"text": "a dog"})
        assert_error(response, 503, "overloaded")
        assert int(response.headers["retry-after"]) >= 1
        assert batcher.queued_inputs == 2  # refused before it was queued
