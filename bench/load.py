"""Closed-loop HTTP load on loopback: a few client threads, each with its own connection, bounded in count and time.

``run_load`` is shared by the benchmarks: ``http_concurrency`` (QPS per level of concurrency) and
``reindex_under_load`` (searches while a re-index job runs, until a stop event).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

Call = Callable[[httpx.Client, int], httpx.Response]


@dataclass
class LoadResult:
    """What the clients saw: per-request latency (s), failures (non-200 or transport errors), wall seconds,
    and the ``version`` field of each successful JSON answer (None where absent)."""

    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    versions: list[str | None] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def qps(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds > 0 else 0.0


def run_load(base: str, call: Call, *, clients: int, requests: int, max_s: float,
             stop: threading.Event | None = None) -> LoadResult:
    """Up to ``requests`` calls of ``call(client, i)`` spread over ``clients`` threads, for at most ``max_s``
    seconds or until ``stop`` is set; returns a ``LoadResult``."""
    result = LoadResult()
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.monotonic() + max_s

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    response = call(client, i)
                    failure = None if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"
                    version = response.json().get("version") if failure is None else None
                except httpx.HTTPError as exc:
                    failure, version = f"{type(exc).__name__}: {exc}", None
                elapsed = time.perf_counter() - started
                with lock:
                    result.latencies_s.append(elapsed)
                    if failure is None:
                        result.versions.append(version)
                    else:
                        result.failures.append(failure)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()
    result.seconds = time.perf_counter() - started
    return result
