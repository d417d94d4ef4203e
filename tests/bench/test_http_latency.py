"""bench.http_latency: the paths are timed in turn, query by query, and the thread setting runs before each call."""

from __future__ import annotations

from bench.http_latency import time_alternating, with_threads


def test_calls_alternate_query_by_query_after_the_warmup() -> None:
    order: list[tuple[str, int]] = []
    calls = {name: (lambda i, name=name: order.append((name, i))) for name in ("a", "b", "c")}
    times = time_alternating(calls, count=3, warmup=1)
    assert order == [(name, i) for i in (0, 0, 1, 2) for name in ("a", "b", "c")]
    assert {name: len(seconds) for name, seconds in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(s >= 0 for seconds in times.values() for s in seconds)


def test_thread_setting_runs_before_every_call() -> None:
    events: list[str] = []
    wrapped = with_threads(lambda i: events.append(f"call {i}") or i, lambda: events.append("threads"))
    assert [wrapped(1), wrapped(2)] == [1, 2]
    assert events == ["threads", "call 1", "threads", "call 2"]
