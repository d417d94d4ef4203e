"""Measuring one peer engine: build, tune to the recall target, latency at 1 client, QPS at N clients, RSS.

Durations are seconds inside, milliseconds in the row (latency percentiles). The 1-client queries of every engine
are timed in alternation with the in-process FAISS reference, query by query, so a shared machine's drift hits
both alike and each row can say how far it is from the limit.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.load import Outcome, closed_loop
from bench.peer_engines import PeerEngine
from bench.peer_servers import PeerUnavailableError
from bench.vector_measure import percentile_ms
from bench.vector_sets import recall_at_k

logger = logging.getLogger(__name__)

PARAM_LADDER = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


@dataclass
class LoadPlan:
    """The bench's query workload: ``k``, the recall target, and the bounds of the N-client phase."""

    k: int = 10
    recall_target: float = 0.95
    clients: int = 16
    load_requests: int = 3000
    load_seconds: float = 30.0
    warmup: int = 10


def search_all(engine: PeerEngine, queries: np.ndarray, k: int) -> list[list[int]]:
    """The engine's ids for every query, one call each, through one client."""
    with engine.client() as client:
        return [engine.search(client, query, k) for query in queries]


def tune(engine: PeerEngine, queries: np.ndarray, truth: np.ndarray, plan: LoadPlan, *,
         start: int | None = None) -> tuple[int | None, list[tuple[int, float]]]:
    """Raise the engine's search parameter along PARAM_LADDER (from ``start``, at least k) until recall@k on
    ``queries`` reaches the target; returns (the value kept, [(value, recall), ...] tried). Exact engines
    (``param_name`` None) return (None, [])."""
    if engine.param_name is None:
        return None, []
    ladder = [v for v in PARAM_LADDER if v >= max(plan.k, start or 0)] or [PARAM_LADDER[-1]]
    trail = []
    for value in ladder:
        engine.set_param(value)
        recall = recall_at_k(search_all(engine, queries, plan.k), truth, plan.k)
        trail.append((value, recall))
        logger.info("%s: %s=%d gives recall@%d %.4f", engine.name, engine.param_name, value, plan.k, recall)
        if recall >= plan.recall_target:
            break
    return trail[-1][0], trail


def time_single(engine: PeerEngine, reference: PeerEngine | None, queries: np.ndarray, k: int, *,
                warmup: int) -> tuple[list[float], list[list[int]], list[float]]:
    """One client: (engine seconds per query, engine ids per query, reference seconds per query), the two taken
    in turn for every query after ``warmup`` untimed rounds; without a reference its list is empty."""
    seconds, ids, reference_s = [], [], []
    with engine.client() as client, (reference.client() if reference else contextlib.nullcontext()) as local:
        for i in range(warmup):
            engine.search(client, queries[i % len(queries)], k)
        for query in queries:
            if reference is not None:
                started = time.perf_counter()
                reference.search(local, query, k)
                reference_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            ids.append(engine.search(client, query, k))
            seconds.append(time.perf_counter() - started)
    return seconds, ids, reference_s


def under_load(engine: PeerEngine, queries: np.ndarray, plan: LoadPlan) -> dict[str, Any]:
    """QPS and latency with ``plan.clients`` closed-loop clients, each with its own engine client."""

    def call(client: Any, i: int) -> Outcome:
        try:
            return None, engine.search(client, queries[i % len(queries)], plan.k)
        except Exception as exc:  # noqa: BLE001 - a failed request is counted, not raised
            return f"{type(exc).__name__}: {exc}", None

    closed_loop(engine.client, call, clients=plan.clients, requests=plan.clients * 5, max_s=plan.load_seconds)
    load = closed_loop(engine.client, call, clients=plan.clients, requests=plan.load_requests,
                       max_s=plan.load_seconds)
    if load.failures:
        logger.warning("%s: %d failed requests under load, e.g. %s", engine.name, len(load.failures), load.failures[0])
    return {"clients": plan.clients, "load_requests": len(load.latencies_s), "load_failures": len(load.failures),
            "load_seconds": load.seconds, "qps": len(load.values) / load.seconds if load.seconds else None,
            "load_p50_ms": percentile_ms(load.latencies_s, 50), "load_p99_ms": percentile_ms(load.latencies_s, 99)}


def measure_engine(key: str, make: Callable[[], PeerEngine], vectors: np.ndarray, queries: np.ndarray,
                   truth: np.ndarray, plan: LoadPlan, *, reference: PeerEngine | None = None,
                   start_param: int | None = None, keep: bool = False) -> tuple[dict[str, Any], PeerEngine | None]:
    """Start, build, tune, time and load one engine; its JSON row, and the engine itself when ``keep`` (else it
    is closed). An engine that cannot start is a row with status ``unavailable`` and the reason."""
    row: dict[str, Any] = {"key": key, "engine": key, "status": "ok", "reason": ""}
    try:
        engine = make()
    except (ImportError, PeerUnavailableError) as exc:
        row |= {"status": "unavailable", "reason": str(exc)}
        return row, None
    row["engine"] = engine.name
    try:
        started = time.perf_counter()
        engine.build(vectors)
        search_all(engine, queries[:1], plan.k)
        row["build_s"] = time.perf_counter() - started + getattr(engine, "prior_build_s", 0.0)
        logger.info("%s: built %d vectors in %.1f s", engine.name, len(vectors), row["build_s"])
        value, trail = tune(engine, queries, truth, plan, start=start_param)
        seconds, ids, reference_s = time_single(engine, reference, queries, plan.k, warmup=plan.warmup)
        row |= {"param_name": engine.param_name, "param": value, "tuning": trail,
                "recall_at_k": recall_at_k(ids, truth, plan.k), "ids": ids, "queries": len(ids),
                "p50_ms": percentile_ms(seconds, 50), "p99_ms": percentile_ms(seconds, 99),
                "reference_p50_ms": percentile_ms(reference_s, 50) if reference_s else None}
        row |= under_load(engine, queries, plan)
        row |= {"rss_bytes": engine.rss_bytes(), "info": engine.info()}
        logger.info("%s: recall@%d %.3f, p50 %.2f ms at 1 client, %.0f QPS at %d clients", engine.name, plan.k,
                    row["recall_at_k"], row["p50_ms"], row["qps"] or 0, plan.clients)  # a long run's partial result
    except PeerUnavailableError as exc:  # a server it starts in build (arcsearch's Milvus) cannot run here
        row |= {"status": "unavailable", "reason": str(exc)}
        keep = False
    except Exception as exc:  # noqa: BLE001 - one engine failing leaves the others' rows
        logger.exception("%s failed", engine.name)
        row |= {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        keep = False
    if not keep:
        engine.close()
        return row, None
    return row, engine


def ratios(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The issue's targets as ratios of measured rows (None where a side is missing): arcsearch QPS / Chroma's
    (>= 1.5), / Milvus's (>= 1), arcsearch-on-Milvus / Milvus direct (>= 1 / 1.3), HTTP p50 / in-process (<= 1.5)."""
    by_kind = {row["kind"]: row for row in rows if row.get("status") == "ok"}

    def divide(a: str, b: str, field: str) -> float | None:
        top, bottom = by_kind.get(a, {}).get(field), by_kind.get(b, {}).get(field)
        return top / bottom if top and bottom else None

    arcsearch = by_kind.get("arcsearch-faiss", {})
    return {"qps_vs_chroma": divide("arcsearch-faiss", "chroma", "qps"),
            "qps_vs_milvus": divide("arcsearch-faiss", "milvus", "qps"),
            "milvus_backend_qps_vs_milvus": divide("arcsearch-milvus", "milvus", "qps"),
            "milvus_backend_p50_vs_milvus": divide("arcsearch-milvus", "milvus", "p50_ms"),
            "http_p50_vs_in_process": (arcsearch["p50_ms"] / arcsearch["reference_p50_ms"]
                                       if arcsearch.get("reference_p50_ms") else None)}
