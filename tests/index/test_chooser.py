"""The index chooser: which family it picks for a size and budget, and that the recall it records is what a
brute-force check measures on the same held-out queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arcsearch.index.chooser import (
    IndexBudget,
    IndexBudgetError,
    candidate_factories,
    choose_factory,
    estimated_bytes,
    parse_memory,
)
from arcsearch.index.items import ItemRecord
from arcsearch.index.store import IndexStore
from arcsearch.index.tuning import RECALL_K, held_out_ids

GIB = 2 ** 30


def mixture(num_vectors: int, dim: int, *, clusters: int = 100, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit vectors around ``clusters`` random centres: clustered like embeddings, not noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, num_vectors)] + spread * rng.standard_normal((num_vectors, dim),
                                                                                             dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force_recall(store: IndexStore, vectors: np.ndarray, query_ids: np.ndarray) -> float:
    """recall@10 of ``store.search`` (own item excluded) against numpy's exact top 10 of the other vectors."""
    shares = []
    for row in query_ids:
        scores = vectors @ vectors[row]
        scores[row] = -np.inf
        truth = {f"v{i}" for i in np.argsort(-scores, kind="stable")[:RECALL_K]}
        hits = store.search(vectors[row:row + 1], RECALL_K, exclude=[f"v{row}"])[0]
        shares.append(len(truth & {hit.external_id for hit in hits}) / RECALL_K)
    return float(np.mean(shares))


@pytest.mark.parametrize(("num_vectors", "dim", "max_memory", "family"), [
    (10_000, 384, None, "Flat"),
    (40_000, 384, None, "HNSW32"),
    (100_000, 384, 2 * GIB, "IVF1024,Flat"),
    (1_000_000, 384, 2 * GIB, "IVF4096,Flat"),
    (1_000_000, 128, 2 * GIB, "IVF4096,Flat"),
    (1_000_000, 384, GIB // 2, "IVF4096,SQ8"),
    (1_000_000, 384, GIB // 8, "OPQ96_384,IVF4096,PQ96np"),
])
def test_the_chooser_picks_the_family_that_fits_the_size_and_budget(num_vectors: int, dim: int,
                                                                   max_memory: int | None, family: str) -> None:
    chosen = choose_factory(num_vectors, dim, IndexBudget(max_memory_bytes=max_memory))
    assert chosen == family
    assert max_memory is None or estimated_bytes(chosen, num_vectors, dim) <= max_memory


def test_a_budget_too_small_for_any_index_is_refused_and_a_target_of_one_means_exact_search() -> None:
    with pytest.raises(IndexBudgetError, match="fits in 1000 bytes"):
        choose_factory(1_000_000, 128, IndexBudget(max_memory_bytes=1000))
    assert candidate_factories(1_000_000, 128, target_recall=1.0) == ["Flat"]


@pytest.mark.parametrize(("text", "size_bytes"), [("2GiB", 2 * GIB), ("512MB", 512 * 10 ** 6), ("1.5kib", 1536),
                                                 ("4096", 4096), (" 3 gb ", 3 * 10 ** 9), (77, 77)])
def test_memory_sizes_are_read_with_their_units(text: str | int, size_bytes: int) -> None:
    assert parse_memory(text) == size_bytes


@pytest.mark.parametrize("text", ["lots", "2 GiBs", "-1GB", "0", "", "1e9"])
def test_malformed_memory_sizes_are_refused(text: str) -> None:
    with pytest.raises(IndexBudgetError):
        parse_memory(text)


@pytest.mark.parametrize("rung", [0, 1])  # 0: HNSW32 (no memory bound); 1: IVF-Flat (HNSW does not fit)
def test_recorded_recall_is_what_brute_force_measures_on_the_same_queries(tmp_path: Path, rung: int) -> None:
    vectors = mixture(24_000, 16, spread=0.6)
    ladder = candidate_factories(len(vectors), 16)
    budget = IndexBudget(target_recall=0.9,
                         max_memory_bytes=estimated_bytes(ladder[rung], len(vectors), 16) if rung else None)
    records = [ItemRecord(f"v{i}") for i in range(len(vectors))]
    built = IndexStore.build(vectors, records, modality="text", embedder_sha256="e" * 64, factory=None, budget=budget)
    built.save(tmp_path / "bundle")
    store = IndexStore.load(tmp_path / "bundle")
    manifest, tuning = store.manifest, store.manifest.tuning
    assert manifest.factory == ladder[rung] and tuning is not None
    assert manifest.search_params.startswith("efSearch=" if rung == 0 else "nprobe=")
    assert tuning.recall_at_10 >= 0.9 and tuning.target_recall == 0.9
    measured = brute_force_recall(store, vectors, held_out_ids(len(vectors), tuning.queries, seed=tuning.seed))
    assert measured == pytest.approx(tuning.recall_at_10, abs=0.01)


def test_an_explicit_factory_wins_over_a_budget() -> None:
    vectors = mixture(2_000, 16)
    store = IndexStore.build(vectors, [ItemRecord(f"v{i}") for i in range(2_000)], modality="text",
                             embedder_sha256="e" * 64, factory="HNSW16", budget=IndexBudget(target_recall=0.99))
    assert (store.manifest.factory, store.manifest.search_params, store.manifest.tuning) == ("HNSW16", "", None)
