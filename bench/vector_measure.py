"""Measuring engines on one vector set: build time, interleaved query loops, per-engine summary rows and ratios.

Durations are kept in seconds and reported in milliseconds (latency percentiles) or queries per second (batch
calls). ``run_vector_set`` builds every engine, runs the single, batch and filtered phases interleaved across
engines, closes them, and returns the set's JSON entry; recall is scored against ``bench.vector_sets``' exact
truth and ratios are engine / the first engine key.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.vector_engines import Engine, EngineFactory
from bench.vector_sets import VectorSet, exact_filtered_top_k, exact_top_k, recall_at_k

logger = logging.getLogger(__name__)


@dataclass
class Measured:
    """What one engine did on one vector set; durations in seconds."""

    key: str
    name: str = ""
    status: str = "ok"  # ok | unavailable | failed | skipped
    reason: str = ""
    build_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    single_s: list[float] = field(default_factory=list)
    single_ids: list[list[int]] = field(default_factory=list)
    batch_s: list[float] = field(default_factory=list)
    filtered_s: list[float] = field(default_factory=list)
    filtered_ids: list[list[int]] = field(default_factory=list)


def percentile_ms(samples_s: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) of durations in seconds, in milliseconds; None without samples."""
    return float(np.percentile(np.asarray(samples_s) * 1000.0, q)) if len(samples_s) else None


def start_engine(key: str, make: EngineFactory, workdir: Path, vectors: VectorSet) -> tuple[Engine | None, Measured]:
    """Construct and fill one engine, timing the insert + first query; failures are recorded, not raised."""
    measured = Measured(key=key, name=key)
    try:
        engine = make(workdir)
    except ImportError as exc:
        measured.status, measured.reason = "unavailable", f"cannot import: {exc}"
        return None, measured
    except Exception as exc:  # noqa: BLE001 - an engine that cannot start is reported, the others still run
        measured.status, measured.reason = "unavailable", f"cannot start: {type(exc).__name__}: {exc}"
        return None, measured
    measured.name = engine.name
    try:
        started = time.perf_counter()
        engine.build(vectors.doc_vectors, vectors.doc_labels)
        engine.search(vectors.query_vectors[0], 1)
        measured.build_s = time.perf_counter() - started
        measured.info = engine.info()
    except Exception as exc:  # noqa: BLE001
        logger.exception("%s failed to build %d vectors", measured.name, vectors.size)
        measured.status, measured.reason = "failed", f"build: {type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            engine.close()
        return None, measured
    logger.info("%s: inserted %d vectors in %.2f s", measured.name, vectors.size, measured.build_s)
    return engine, measured


def interleaved(engines: dict[str, Engine], rounds: int, call: Callable[[Engine, int], list[Any]],
                record: Callable[[str, float, list[Any]], None], *, deadline: float, budget_s: float,
                warmup: int = 3) -> dict[str, int]:
    """Run ``call(engine, i)`` for i in range(rounds), every engine once per round in a rotating order,
    passing each duration (s) and result to ``record``. An engine leaves once it has spent ``budget_s`` in
    this phase; all stop at ``deadline`` (time.monotonic). Returns the rounds each engine did."""
    for i in range(min(warmup, rounds)):
        for engine in engines.values():
            call(engine, i)
    keys = list(engines)
    spent = dict.fromkeys(keys, 0.0)
    done = dict.fromkeys(keys, 0)
    for i in range(rounds):
        active = [key for key in keys if spent[key] < budget_s]
        if not active or time.monotonic() > deadline:
            logger.warning("stopped after %d of %d rounds (time limit)", i, rounds)
            break
        shift = i % len(active)
        for key in active[shift:] + active[:shift]:
            started = time.perf_counter()
            result = call(engines[key], i)
            seconds = time.perf_counter() - started
            record(key, seconds, result)
            spent[key] += seconds
            done[key] += 1
    for key in keys:
        if done[key] < rounds:
            logger.warning("%s: %d of %d rounds within the limits", key, done[key], rounds)
    return done


def measure_queries(engines: dict[str, Engine], measured: dict[str, Measured], vectors: VectorSet, *, k: int,
                    batch_size: int, batch_rounds: int, deadline: float, budget_s: float) -> dict[str, dict[str, int]]:
    """Single, batch and filtered searches, interleaved across engines; returns rounds done per phase and engine."""
    queries, labels = vectors.query_vectors, vectors.query_labels
    n = len(queries)

    def keep_single(key: str, seconds: float, ids: list[int]) -> None:
        measured[key].single_s.append(seconds)
        measured[key].single_ids.append(ids)

    def keep_filtered(key: str, seconds: float, ids: list[int]) -> None:
        measured[key].filtered_s.append(seconds)
        measured[key].filtered_ids.append(ids)

    def batch_of(i: int) -> np.ndarray:
        start = (i * batch_size) % n
        return np.take(queries, np.arange(start, start + batch_size) % n, axis=0)

    limits = {"deadline": deadline, "budget_s": budget_s}
    return {
        "single": interleaved(engines, n, lambda e, i: e.search(queries[i], k), keep_single, **limits),
        "batch": interleaved(engines, batch_rounds, lambda e, i: e.search_batch(batch_of(i), k),
                             lambda key, s, _: measured[key].batch_s.append(s), **limits),
        "filtered": interleaved(engines, n, lambda e, i: e.search_filtered(queries[i], k, labels[i]),
                                keep_filtered, **limits),
    }


def summarise(measured: Measured, truth: np.ndarray, filtered_truth: list[np.ndarray], *, k: int,
              batch_size: int) -> dict[str, Any]:
    """The JSON row of one engine: medians, percentiles (ms), QPS, recalls."""
    row: dict[str, Any] = {"key": measured.key, "engine": measured.name, "status": measured.status,
                           "reason": measured.reason, "info": measured.info}
    if measured.status != "ok":
        return row
    batch_median = float(np.median(measured.batch_s)) if measured.batch_s else None
    row |= {
        "build_s": measured.build_s,
        "single_queries": len(measured.single_s),
        "p50_ms": percentile_ms(measured.single_s, 50), "p99_ms": percentile_ms(measured.single_s, 99),
        "batch_calls": len(measured.batch_s), "batch_size": batch_size,
        "batch_qps": batch_size / batch_median if batch_median else None,
        "recall_at_k": recall_at_k(measured.single_ids, truth[:len(measured.single_ids)], k),
        "filtered_queries": len(measured.filtered_s),
        "filtered_p50_ms": percentile_ms(measured.filtered_s, 50),
        "filtered_p99_ms": percentile_ms(measured.filtered_s, 99),
        "filtered_recall_at_k": recall_at_k(measured.filtered_ids, filtered_truth[:len(measured.filtered_ids)], k),
    }
    return row


RATIO_FIELDS = ("build_s", "p50_ms", "p99_ms", "batch_qps", "filtered_p50_ms")


def add_ratios(rows: list[dict[str, Any]], reference_key: str) -> None:
    """Give each measured row ``ratios``: its value / the reference row's, for RATIO_FIELDS (QPS: higher is better
    for the engine, so a ratio below 1 means fewer queries per second than arcsearch)."""
    reference = next((r for r in rows if r["key"] == reference_key and r["status"] == "ok"), None)
    for row in rows:
        if row["status"] != "ok" or reference is None:
            continue
        row["ratios"] = {name: (row[name] / reference[name] if row.get(name) and reference.get(name) else None)
                         for name in RATIO_FIELDS}
        row["ratios_against"] = reference["engine"]


def run_vector_set(vectors: VectorSet, makers: dict[str, EngineFactory], *, k: int, batch_size: int,
                   batch_rounds: int, deadline: float, budget_s: float, workdir: Path) -> dict[str, Any]:
    """Build every engine on ``vectors``, measure them interleaved, close them; the set's JSON entry."""
    logger.info("set %s: %d vectors of dimension %d, %d queries", vectors.name, vectors.size, vectors.dim,
                len(vectors.query_vectors))
    truth = exact_top_k(vectors.doc_vectors, vectors.query_vectors, k)
    filtered_truth = exact_filtered_top_k(vectors.doc_vectors, vectors.doc_labels, vectors.query_vectors,
                                          vectors.query_labels, k)
    engines: dict[str, Engine] = {}
    measured: dict[str, Measured] = {}
    try:
        for key, make in makers.items():
            if time.monotonic() > deadline:
                measured[key] = Measured(key=key, name=key, status="skipped", reason="time limit reached before build")
                continue
            engine, measured[key] = start_engine(key, make, workdir / vectors.name, vectors)
            if engine is not None:
                engines[key] = engine
        done = measure_queries(engines, measured, vectors, k=k, batch_size=batch_size, batch_rounds=batch_rounds,
                               deadline=deadline, budget_s=budget_s) if engines else {}
    finally:
        for engine in engines.values():
            engine.close()
    rows = [summarise(m, truth, filtered_truth, k=k, batch_size=batch_size) for m in measured.values()]
    add_ratios(rows, next(iter(makers)))
    matches = np.asarray([sum(label == q for label in vectors.doc_labels) for q in vectors.query_labels])
    return {"name": vectors.name, "size": vectors.size, "dim": vectors.dim, "queries": len(vectors.query_vectors),
            "notes": vectors.notes, "rounds_done": done, "filter_matches_median": float(np.median(matches)),
            "engines": rows}
