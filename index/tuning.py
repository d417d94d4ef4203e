"""Tuning an index's search knob (IVF ``nprobe``, HNSW ``efSearch``) to a recall target on held-out queries.

Held-out queries are corpus vectors drawn with a fixed seed (``held_out_ids``). Each query's own vector is
left out of both the exact and the approximate answers, so recall@k counts only its k true neighbours
*other than itself* (an index always finds a query's own vector, which would inflate recall by up to 1/k).
The exact answer is brute force over the whole corpus (``faiss.knn``, inner product on unit vectors).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import faiss
import numpy as np

from arcsearch.index.faiss_index import inner_index, set_search_params

logger = logging.getLogger(__name__)

RECALL_K = 10
MAX_LATENCY_QUERIES = 200  # single-query searches timed for the p50 latency
MAX_EF_SEARCH = 4096


class OperatingPoint(NamedTuple):
    """One setting of the knob: its search-parameter string, recall@k and batched queries per second."""

    params: str
    recall: float
    qps: float


@dataclass(frozen=True)
class Tuned:
    """The chosen search parameters and what they measured on ``queries`` held-out queries."""

    params: str
    recall: float
    query_ms_p50: float
    queries: int
    curve: list[OperatingPoint] = field(default_factory=list)


def held_out_ids(num_vectors: int, count: int, *, seed: int) -> np.ndarray:
    """``min(count, num_vectors)`` distinct row ids of the corpus, sorted, drawn with ``seed``: (q,) int64."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_vectors, size=min(count, num_vectors), replace=False)).astype(np.int64)


def _drop_self(ids: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` ids of each row of (q, k+1) ``ids`` other than the row's own query id: (q, k)."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for row, (found, own) in enumerate(zip(ids, query_ids, strict=True)):
        others = found[found != own][:k]
        out[row, :len(others)] = others
    return out


def exact_neighbours(vectors: np.ndarray, query_ids: np.ndarray, *, k: int = RECALL_K) -> np.ndarray:
    """The exact top-``k`` rows of unit (n, d) ``vectors`` by inner product for each query row, itself left
    out: (q, k) int64."""
    _, ids = faiss.knn(vectors[query_ids], vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    return _drop_self(ids, query_ids, k)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each truth row (q, k) that appears in the same row of ``found`` (q, >=k)."""
    k = truth.shape[1]
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / k if hits else 1.0


def measure(index: faiss.Index, vectors: np.ndarray, query_ids: np.ndarray, truth: np.ndarray,
            params: str) -> OperatingPoint:
    """Recall@k and batched QPS of ``index`` under search parameters ``params`` (applied to it)."""
    set_search_params(index, params)
    k = truth.shape[1]
    start = time.perf_counter()
    _, ids = index.search(vectors[query_ids], k + 1)
    elapsed_s = time.perf_counter() - start
    recall = recall_at_k(_drop_self(ids, query_ids, k), truth)
    return OperatingPoint(params, recall, len(query_ids) / max(elapsed_s, 1e-9))


def knob_values(index: faiss.Index) -> tuple[str, list[int]]:
    """The knob of ``index`` and its candidate values, small to large (("", []) for an exact index)."""
    inner = inner_index(index)
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        return "nprobe", [2 ** i for i in range(int(np.log2(ivf.nlist)) + 1)]
    if isinstance(inner, faiss.IndexHNSW):
        return "efSearch", [2 ** i for i in range(4, int(np.log2(MAX_EF_SEARCH)) + 1)]
    return "", []


def query_ms_p50(index: faiss.Index, queries: np.ndarray, *, k: int = RECALL_K) -> float:
    """Median milliseconds of one single-query search over up to MAX_LATENCY_QUERIES of (q, d) ``queries``."""
    times_ms = []
    for row in queries[:MAX_LATENCY_QUERIES]:
        start = time.perf_counter()
        index.search(row.reshape(1, -1), k)
        times_ms.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times_ms))


def _smallest_passing(index: faiss.Index, vectors: np.ndarray, query_ids: np.ndarray, truth: np.ndarray, *,
                      knob: str, low: int, high: int, target: float) -> OperatingPoint | None:
    """Bisect the integer knob in (low, high) for the smallest value reaching ``target``; None if none does."""
    best = None
    while high - low > 1 and (high - low) / high > 0.1:  # a 10% finer knob is not worth more searches
        middle = (low + high) // 2
        point = measure(index, vectors, query_ids, truth, f"{knob}={middle}")
        if point.recall >= target:
            best, high = point, middle
        else:
            low = middle
    return best


def tune(index: faiss.Index, vectors: np.ndarray, query_ids: np.ndarray, *, target_recall: float,
         k: int = RECALL_K) -> Tuned:
    """The smallest knob value whose recall@k on the held-out ``query_ids`` rows of unit (n, d) ``vectors``
    reaches ``target_recall`` (or the best one, with a warning, if none does); leaves ``index`` set to it."""
    truth = exact_neighbours(vectors, query_ids, k=k)
    knob, values = knob_values(index)
    curve: list[OperatingPoint] = []
    chosen = None
    for value in values or [0]:
        point = measure(index, vectors, query_ids, truth, f"{knob}={value}" if knob else "")
        curve.append(point)
        if point.recall >= target_recall:
            chosen = point
            if len(curve) > 1:
                low = values[len(curve) - 2]
                chosen = _smallest_passing(index, vectors, query_ids, truth, knob=knob, low=low, high=value,
                                           target=target_recall) or point
            break
    if chosen is None:
        chosen = max(curve, key=lambda p: (p.recall, p.qps))
        logger.warning("no %s setting reaches recall@%d %.3f; best is %s at %.3f", knob or "search", k,
                       target_recall, chosen.params or "exact", chosen.recall)
    set_search_params(index, chosen.params)
    latency_ms = query_ms_p50(index, vectors[query_ids], k=k)
    logger.info("tuned %s: recall@%d %.3f, p50 %.2f ms per query", chosen.params or "exact search", k,
                chosen.recall, latency_ms)
    return Tuned(chosen.params, chosen.recall, latency_ms, len(query_ids), curve)
