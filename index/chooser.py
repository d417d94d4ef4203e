"""Choosing a FAISS index by budget: Flat, HNSW, IVF-Flat, IVF-SQ8 or IVF-PQ (OPQ where it helps), tuned to a
recall target.

Given n vectors of dimension d, a recall@10 target and an optional memory budget for the index, the chooser
walks a ladder from the fastest-to-query family to the most compact and takes the first whose estimated size
(``faiss_memory.factory_memory``, checked against serialised sizes in tests) fits the budget:

- n <= FLAT_MAX_VECTORS (or a target of 1.0): ``Flat``; exact, and a scan of 20k vectors takes about a ms.
- n <= HNSW_MAX_VECTORS: ``HNSW32``, where IVF's k-means has few points per list; it keeps the raw vectors
  plus ~300 bytes of links per vector, cannot remove vectors (deletes stay tombstones until compaction) and
  its build time grows to many minutes on a few cores. Past 50k IVF-Flat wins: at 100k x 128
  (bench.scale_index, docs/results.md) it was faster than HNSW32 at equal recall, and HNSW's recall tuned on
  held-out *corpus* vectors (which sit in its graph) overstated its recall on fresh queries (0.951 vs 0.931)
  while IVF's transferred (0.952 vs 0.949).
- then ``IVF<nlist>,Flat`` (raw vectors, ~4 sqrt(n) lists, trained by k-means on a sample of
  TRAIN_POINTS_PER_LIST points per list), ``IVF<nlist>,SQ8`` (1 byte per dimension), and ``IVF<nlist>,PQ<M>np``
  for M = d/2 .. d/16 bytes per vector (``np``: no polysemous training, which takes minutes and serves only
  Hamming filtering), preceded by an ``OPQ`` rotation when each sub-quantizer covers 4 or more dimensions
  (where OPQ's balancing of variance across sub-spaces pays).

The chosen index is trained, filled, and its knob (``nprobe`` / ``efSearch``) tuned by ``index.tuning`` on
TUNING_QUERIES held-out queries until recall@10 against exact search reaches the target.

Why not autofaiss (criteo/autofaiss, which makes this choice for clip-retrieval): it tunes the knob to a
*latency* budget and reports recall afterwards, whereas we promise a recall and let latency follow; it
pins ``numpy<2`` (this project runs numpy 2) and pulls in pandas, pyarrow, fsspec and embedding_reader; and
its index keys assume L2-style factories we would have to re-check for inner product. Its heuristics are
reused here: nlist ~ 4 sqrt(n) as a power of two, HNSW when it fits the memory, IVF-Flat before PQ, and
OPQ before PQ.
"""

from __future__ import annotations

import logging
import math
import re
import time

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from arcsearch.index.bundle import IndexManifest, IndexTuning
from arcsearch.index.faiss_index import IndexStoreError, add_vectors, make_index, train_index
from arcsearch.index.faiss_memory import factory_memory
from arcsearch.index.tuning import Tuned, held_out_ids, tune

logger = logging.getLogger(__name__)

FLAT_MAX_VECTORS = 20_000
HNSW_MAX_VECTORS = 50_000
HNSW_FACTORY = "HNSW32"
TRAIN_POINTS_PER_LIST = 50
PQ_TRAIN_POINTS = 256 * 40  # 8-bit codebooks: 256 centroids each, ~40 points per centroid
TUNING_QUERIES = 1000
TUNING_SEED = 0
MEMORY_UNITS = {"": 1, "b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
                "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
MEMORY_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


class IndexBudgetError(IndexStoreError):
    """No index family fits the budget, or a budget is malformed."""


def parse_memory(text: str | int) -> int:
    """Bytes of a memory size such as ``2GiB``, ``512MB``, ``1.5gb`` or ``1048576`` (a bare number is bytes)."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        match = MEMORY_PATTERN.fullmatch(text)
        if match is None or match.group(2).lower() not in MEMORY_UNITS:
            raise IndexBudgetError(f"memory size {text!r} must be a number with an optional unit "
                                   f"({', '.join(u for u in MEMORY_UNITS if u)}), e.g. '2GiB'")
        value, unit = float(match.group(1)), match.group(2).lower()
    size_bytes = int(value * MEMORY_UNITS[unit])
    if size_bytes < 1:
        raise IndexBudgetError(f"memory size {text!r} must be at least 1 byte")
    return size_bytes


class IndexBudget(BaseModel):
    """What the chooser must reach (recall@10) within what it may spend (bytes of index)."""

    model_config = ConfigDict(extra="forbid")

    target_recall: float = Field(0.95, gt=0.0, le=1.0, description="recall@10 against exact search")
    max_memory_bytes: int | None = Field(None, ge=1, description="bound on the index's size; None: no bound")


def ivf_lists(num_vectors: int) -> int:
    """The number of IVF lists for ``num_vectors``: the power of two nearest 4 sqrt(n), in [16, 65536]."""
    return int(min(65536, max(16, 2 ** round(math.log2(4 * math.sqrt(max(num_vectors, 1)))))))


def _pq_factories(dim: int, nlist: int) -> list[str]:
    sizes = [m for m in (dim // 2, dim // 4, dim // 8, dim // 16) if m >= 4 and dim % m == 0]
    return [f"OPQ{m}_{dim},IVF{nlist},PQ{m}np" if dim // m >= 4 else f"IVF{nlist},PQ{m}np" for m in sizes]


def candidate_factories(num_vectors: int, dim: int, *, target_recall: float = 0.95) -> list[str]:
    """The ladder for n vectors of dimension ``dim``, fastest to query first, most compact last."""
    if num_vectors <= FLAT_MAX_VECTORS or target_recall >= 1.0:
        return ["Flat"]
    nlist = ivf_lists(num_vectors)
    ladder = [HNSW_FACTORY] if num_vectors <= HNSW_MAX_VECTORS else []
    return ladder + [f"IVF{nlist},Flat", f"IVF{nlist},SQ8", *_pq_factories(dim, nlist)]


def estimated_bytes(factory: str, num_vectors: int, dim: int) -> int:
    """The estimated size of ``factory`` holding n d-dimensional vectors (as built by ``make_index``)."""
    per_vector, fixed = factory_memory(make_index(dim, factory))
    return int(per_vector * num_vectors + fixed)


def choose_factory(num_vectors: int, dim: int, budget: IndexBudget) -> str:
    """The first factory of the ladder whose estimated size fits ``budget.max_memory_bytes``."""
    ladder = candidate_factories(num_vectors, dim, target_recall=budget.target_recall)
    limit = budget.max_memory_bytes
    for factory in ladder:
        if limit is None or estimated_bytes(factory, num_vectors, dim) <= limit:
            return factory
    smallest = min(estimated_bytes(f, num_vectors, dim) for f in ladder)
    raise IndexBudgetError(f"no index of {num_vectors} {dim}-d vectors fits in {limit} bytes; the most compact "
                           f"candidate ({ladder[-1]}) needs about {smallest} bytes")


def _training_sample(unit: np.ndarray, factory: str, *, seed: int) -> np.ndarray:
    """The rows an IVF / PQ index is trained on: about TRAIN_POINTS_PER_LIST per list (more for PQ)."""
    lists = re.search(r"IVF(\d+)", factory)
    wanted = TRAIN_POINTS_PER_LIST * int(lists.group(1)) if lists else len(unit)
    if "PQ" in factory:
        wanted = max(wanted, PQ_TRAIN_POINTS)
    if wanted >= len(unit):
        return unit
    rows = np.sort(np.random.default_rng(seed).choice(len(unit), size=wanted, replace=False))
    return unit[rows]


def build_tuned(unit: np.ndarray, factory: str, *, target_recall: float,
                seed: int = TUNING_SEED, queries: int = TUNING_QUERIES) -> tuple[faiss.Index, Tuned, float]:
    """Build ``factory`` over unit (n, d) vectors (ids 0..n-1), train it on a sample, tune its knob to
    ``target_recall`` on held-out queries; (index, tuning, build seconds)."""
    start = time.perf_counter()
    index = make_index(unit.shape[1], factory)
    train_index(index, _training_sample(unit, factory, seed=seed))
    add_vectors(index, unit)
    build_s = time.perf_counter() - start
    tuned = tune(index, unit, held_out_ids(len(unit), queries, seed=seed), target_recall=target_recall)
    return index, tuned, build_s


def build_chosen(unit: np.ndarray, budget: IndexBudget, *,
                 seed: int = TUNING_SEED) -> tuple[faiss.Index, str, str, IndexTuning]:
    """Choose, build and tune an index for unit (n, d) vectors within ``budget``: (index, factory, search
    parameters, facts)."""
    factory = choose_factory(len(unit), unit.shape[1], budget)
    logger.info("index chooser: %d x %d vectors, target recall@10 %.3f, budget %s bytes -> %s", len(unit),
                unit.shape[1], budget.target_recall, budget.max_memory_bytes, factory)
    index, tuned, build_s = build_tuned(unit, factory, target_recall=budget.target_recall, seed=seed)
    facts = IndexTuning(target_recall=budget.target_recall, max_memory_bytes=budget.max_memory_bytes,
                        recall_at_10=round(tuned.recall, 4), query_ms_p50=round(tuned.query_ms_p50, 3),
                        queries=tuned.queries, seed=seed, build_s=round(build_s, 2),
                        estimated_bytes=estimated_bytes(factory, len(unit), unit.shape[1]))
    return index, factory, tuned.params, facts


def manifest_budget(manifest: IndexManifest) -> IndexBudget | None:
    """The budget an index chosen by budget was built with (so a re-index chooses again), else None."""
    tuning = manifest.tuning
    return None if tuning is None else IndexBudget(target_recall=tuning.target_recall,
                                                   max_memory_bytes=tuning.max_memory_bytes)


def build_index(unit: np.ndarray, *, factory: str | None, budget: IndexBudget | None
                ) -> tuple[faiss.Index, str, str, IndexTuning | None]:
    """An index over unit (n, d) vectors: ``factory`` if given (it wins over a budget), else one chosen by
    ``budget``, else Flat; returns (index, factory, search parameters, tuning facts or None)."""
    if factory is None and budget is not None:
        return build_chosen(unit, budget)
    chosen = factory or "Flat"
    index = make_index(unit.shape[1], chosen)
    train_index(index, unit)
    add_vectors(index, unit)
    return index, chosen, "", None
