"""Closed-loop load on loopback: a few client threads, each with its own client, bounded in count and time.

``closed_loop`` drives any client (an HTTP connection, a pymilvus or Chroma client); ``run_load`` is its HTTP
form, shared by the benchmarks: ``http_concurrency`` (QPS per level of concurrency), ``reindex_under_load``
(searches while a re-index job runs, until a stop event) and ``peers`` (every engine through its own client).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

Call = Callable[[httpx.Client, int], httpx.Response]
ClientT = TypeVar("ClientT")
# (failure message or None, the value kept for a success): what one call of a closed loop reports
Outcome = tuple[str | None, Any]


@dataclass
class LoadResult:
    """What the clients saw: per-request latency (s), failures (non-200, transport errors, or what the caller's
    call reported), wall seconds, and the value each successful call kept (for ``run_load``: the ``version``
    field of the JSON answer, None where absent)."""

    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def versions(self) -> list[str | None]:
        """``run_load``'s name for ``values``: the answers' ``version`` fields."""
        return self.values

    @property
    def qps(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds > 0 else 0.0


def closed_loop(open_client: Callable[[], AbstractContextManager[ClientT]], call: Callable[[ClientT, int], Outcome],
                *, clients: int, requests: int, max_s: float, stop: threading.Event | None = None) -> LoadResult:
    """Up to ``requests`` calls of ``call(client, i)`` spread over ``clients`` threads, each with its own client
    from ``open_client()``, for at most ``max_s`` seconds or until ``stop`` is set; returns a ``LoadResult``."""
    result = LoadResult()
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.monotonic() + max_s

    def worker() -> None:
        with open_client() as client:
            while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                started = time.perf_counter()
                failure, value = call(client, i)
                elapsed = time.perf_counter() - started
                with lock:
                    result.latencies_s.append(elapsed)
                    if failure is None:
                        result.values.append(value)
                    else:
                        result.failures.append(failure)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()
    result.seconds = time.perf_counter() - started
    return result


def run_load(base: str, call: Call, *, clients: int, requests: int, max_s: float,
             stop: threading.Event | None = None) -> LoadResult:
    """``closed_loop`` over HTTP connections to ``base``: a non-200 answer or a transport error is a failure, the
    ``version`` field of each 200 answer is kept."""

    def checked(client: httpx.Client, i: int) -> Outcome:
        try:
            response = call(client, i)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", None
        if response.status_code != 200:
            return f"{response.status_code}: {response.text[:200]}", None
        return None, response.json().get("version")

    return closed_loop(lambda: httpx.Client(base_url=base, timeout=30), checked, clients=clients,
                       requests=requests, max_s=max_s, stop=stop)
