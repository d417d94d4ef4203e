"""Dynamic micro-batching: concurrent queries to one collection share one forward pass and one search.

Request threads call ``MicroBatcher.submit(inputs, k)`` and block on a future; async handlers await
the future of ``enqueue`` instead, so a waiting request holds no thread. One worker thread per
collection takes the first waiting query, then gathers the queued ones and, while other queries are on
their way (``arriving``: a request being read and decoded), waits for them until ``max_batch`` inputs are
collected or ``max_wait_ms`` has passed since the first one arrived; then it hands the whole batch to
``process`` (embed all inputs at once, search all vectors at once). With nothing on its way a batch goes
at once, so a lone query pays no wait. Queries that pile up while a batch runs go into the next one, so
under load batches grow without anyone waiting longer than one batch plus ``max_wait_ms``.

Nothing grows without bound: ``check_room`` refuses a query (OverloadedError) that would put more than
a given number of inputs in the queue, and ``answer`` / ``submit`` give up on a query after ``timeout_s``
(OverloadedError as well; the query is cancelled, so no batch embeds it for nobody).

The worker is a plain thread: torch and FAISS never run on the event loop. ``wait_idle`` lets background
work (a re-index job embedding on the same cores) give way to queries: it returns once nothing is queued
or running, or after a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from arcsearch.service.core.errors import OverloadedError

logger = logging.getLogger(__name__)

SUBMIT_TIMEOUT_S = 300.0


@dataclass
class PendingQuery:
    """One request's share of a batch: its inputs (images, texts or vectors), its ``k`` and its answer."""

    inputs: Sequence[Any]
    k: int
    options: Any = None
    future: Future = field(default_factory=Future)
    enqueued_at: float = field(default_factory=time.perf_counter)


class Arrival:
    """A query on its way to ``MicroBatcher.enqueue``; ``open`` until it is enqueued or withdrawn."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = True


BatchProcessor = Callable[[list[PendingQuery]], list[Any]]
BatchObserver = Callable[[int, int], None]  # (queries in the batch, inputs in the batch)


class BatcherClosedError(RuntimeError):
    """The batcher was closed (the service is shutting down)."""


class MicroBatcher:
    """Gathers concurrent queries into batches for ``process``; one worker thread, started lazily."""

    def __init__(self, name: str, process: BatchProcessor, *, max_batch: int, max_wait_ms: float,
                 observe: BatchObserver | None = None) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}")
        self.name = name
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._process = process
        self._observe = observe
        self._queue: queue.Queue[PendingQuery | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._idle = threading.Condition()
        self._running = False  # a batch is being gathered or processed
        self._arriving = 0  # queries on their way to enqueue (see arriving)
        self._queued_inputs = 0  # inputs of the queries waiting in the queue
        self.batches = 0  # forward passes run so far
        self.queries = 0  # queries answered so far

    @property
    def queue_depth(self) -> int:
        """Queries waiting for a batch (not counting the batch being processed)."""
        return self._queue.qsize()

    @property
    def queued_inputs(self) -> int:
        """Inputs of the queries waiting for a batch (not counting the batch being processed)."""
        return self._queued_inputs

    def check_room(self, inputs: int, *, max_queued_inputs: int) -> None:
        """OverloadedError if queueing ``inputs`` more would leave more than ``max_queued_inputs`` waiting; an
        empty queue takes any one query (call it just before ``enqueue``: on the event loop nothing can enqueue
        in between)."""
        waiting = self._queued_inputs
        if waiting and waiting + inputs > max_queued_inputs:
            raise OverloadedError(f"collection {self.name!r} has {waiting} query inputs waiting for a forward pass "
                                  f"(at most {max_queued_inputs}); retry shortly",
                                  details={"queued_inputs": waiting, "limit": max_queued_inputs})

    @property
    def arrivals(self) -> int:
        """Queries announced by ``arriving`` and not yet enqueued or withdrawn."""
        return self._arriving

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no query is queued and no batch runs, or ``timeout_s`` seconds passed; True if idle."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._running or not self._queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.01))  # a query may arrive without notifying
        return True

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Arrival]:
        """Count one query as on its way while the block runs (its request being read and decoded), until
        ``enqueue(..., arrival=...)`` takes it: meanwhile a batch being gathered waits for it, at most
        ``max_wait_ms``. Leaving the block without enqueueing (an error) withdraws it."""
        arrival = Arrival()
        with self._lock:
            self._arriving += 1
        try:
            yield arrival
        finally:
            with self._lock:
                self._close_arrival(arrival)

    def _close_arrival(self, arrival: Arrival | None) -> None:
        """Stop counting ``arrival`` (call with ``_lock`` held); idempotent."""
        if arrival is not None and arrival.open:
            arrival.open = False
            self._arriving -= 1

    def enqueue(self, inputs: Sequence[Any], k: int, options: Any = None, *, arrival: Arrival | None = None) -> Future:
        """Queue one query without waiting; its future gets the answer (or the batch's exception). ``arrival``
        (from ``arriving``) is the same query, announced earlier: it stops being counted as on its way."""
        query = PendingQuery(inputs=inputs, k=k, options=options)
        with self._lock:
            if self._closed:
                raise BatcherClosedError(f"batcher {self.name!r} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"batcher-{self.name}", daemon=True)
                self._thread.start()
            self._queue.put(query)
            self._queued_inputs += len(inputs)
            self._close_arrival(arrival)
        return query.future

    def submit(self, inputs: Sequence[Any], k: int, options: Any = None, *,
               timeout_s: float = SUBMIT_TIMEOUT_S) -> Any:
        """Queue one query and block until its batch is processed; re-raises the batch's exception,
        OverloadedError after ``timeout_s`` (the query is then cancelled)."""
        future = self.enqueue(inputs, k, options)
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            future.cancel()
            raise self._timed_out(timeout_s) from None

    async def answer(self, pending: Awaitable[Any], *, timeout_s: float) -> Any:
        """Await ``pending`` (an enqueued query's future, wrapped for asyncio); OverloadedError after
        ``timeout_s`` (the wait cancels the wrapped future, so the worker drops the query)."""
        try:
            return await asyncio.wait_for(pending, timeout_s)
        except TimeoutError:
            raise self._timed_out(timeout_s) from None

    def _timed_out(self, timeout_s: float) -> OverloadedError:
        return OverloadedError(f"no forward pass of collection {self.name!r} answered within {timeout_s:g} s; "
                               "retry shortly", details={"timeout_s": timeout_s})

    def close(self, timeout_s: float = 5.0) -> None:
        """Answer what is queued, then stop the worker."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None:
            thread.join(timeout_s)

    def _take(self, query: PendingQuery | None) -> PendingQuery | None:
        """Count ``query`` (just taken from the queue) as no longer waiting."""
        if query is not None:
            with self._lock:
                self._queued_inputs -= len(query.inputs)
        return query

    def _gather(self, first: PendingQuery) -> tuple[list[PendingQuery], bool]:
        batch, size = [first], len(first.inputs)
        deadline = first.enqueued_at + self.max_wait_s
        while size < self.max_batch:
            remaining = deadline - time.perf_counter()
            wait = remaining > 0 and self._arriving > 0  # a query is on its way: wait for it, up to the deadline
            try:
                nxt = self._take(self._queue.get(timeout=remaining) if wait else self._queue.get_nowait())
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
            size += len(nxt.inputs)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._take(self._queue.get())
            if first is None:
                break
            with self._idle:
                self._running = True
            try:
                batch, stop = self._gather(first)
                batch = [query for query in batch if query.future.set_running_or_notify_cancel()]  # drop cancelled
                if batch:
                    self._run_batch(batch)
            finally:
                with self._idle:
                    self._running = False
                    self._idle.notify_all()

    def _run_batch(self, batch: list[PendingQuery]) -> None:
        """Process ``batch`` and answer its queries; the batch is counted and observed first, so a caller
        that has its answer finds its batch in the metrics."""
        error: BaseException | None = None
        try:
            results = self._process(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"batch processor returned {len(results)} results for {len(batch)} queries")
        except BaseException as exc:  # every waiting request gets the error instead of hanging
            error = exc
        self.batches += 1
        self.queries += len(batch)
        if self._observe is not None:
            self._observe(len(batch), sum(len(q.inputs) for q in batch))
        if error is not None:
            for query in batch:
                query.future.set_exception(error)
            if not isinstance(error, Exception):
                raise error
            return
        for query, result in zip(batch, results, strict=True):
            query.future.set_result(result)
