"""FAISS factory strings are bounded by the memory they cost, per vector and up front, not only by their numbers."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from arcsearch.index.faiss_index import IndexStoreError, check_factory, make_index
from arcsearch.index.faiss_memory import MAX_FIXED_BYTES, factory_memory, max_bytes_per_vector


@pytest.mark.parametrize(("dim", "factory", "needs_training"), [
    (128, "Flat", False), (128, "HNSW32", False), (8, "HNSW32", False), (384, "HNSW64", False),
    (128, "IVF64,Flat", True), (8, "IVF65536,Flat", True), (128, "IVF4096,PQ16", True), (128, "PQ16", True),
    (128, "PQ8x16", True), (128, "IVF64,SQ8", True), (128, "HNSW32,SQ8", True), (128, "PCA64,Flat", True),
    (128, "Pad256,Flat", False), (128, "NSG32,Flat", False), (128, "RQ4x8", True), (128, "IVF64_HNSW32,Flat", True),
    (128, "IVF64,PQ16x4fs", True), (128, "L2norm,Flat", False), (128, "IDMap2,Flat", False),
])
def test_ordinary_factories_are_accepted(dim: int, factory: str, needs_training: bool) -> None:
    assert check_factory(dim, factory) is needs_training


@pytest.mark.parametrize(("dim", "factory", "message"), [
    (128, "HNSW65536", r"about 52\d{4} bytes per vector at d=128, more than the bound of 3072"),
    (8, "HNSW256", r"bytes per vector.*bound of 1152"),
    (128, "NSG4096,Flat", "bytes per vector"),
    (128, "RR65536,Flat", "bytes per vector"),
    (128, "Pad65536,Flat", "bytes per vector"),
    (2048, "IVF65536,Flat", r"up front.*bound of 268435456"),
    (128, "IVF65536_HNSW1024,Flat", "up front"),
    (128, "PQ8x20", r"2\^20 centroids.*up front"),
    (128, "PQ8x24", r"2\^24 centroids.*up front"),
    (128, "PRQ2x4x20", r"2\^20 centroids"),
    (128, "RQ16x16", "up front"),
])
def test_factories_that_cost_too_much_memory_are_refused(dim: int, factory: str, message: str) -> None:
    with pytest.raises(IndexStoreError, match=message):
        check_factory(dim, factory)


def test_the_old_number_limits_still_hold() -> None:
    with pytest.raises(IndexStoreError, match="larger than"):
        check_factory(128, "IVF99999999,Flat")
    with pytest.raises(IndexStoreError, match="factory string"):
        check_factory(128, "Flat; rm -rf /")


@pytest.mark.parametrize(("factory", "n"), [("Flat", 500), ("HNSW32", 2000), ("HNSW8", 2000), ("IVF16,PQ8x4", 1000),
                                            ("PCA32,Flat", 500), ("HNSW16,SQ8", 2000)])
def test_estimates_track_the_serialised_size(factory: str, n: int) -> None:
    """The per-vector estimate is within 40% of what FAISS actually stores for each added vector."""
    dim = 64
    vectors = np.random.default_rng(0).normal(size=(2 * n, dim)).astype(np.float32)
    faiss.normalize_L2(vectors)
    index = make_index(dim, factory)
    if not index.is_trained:
        index.train(vectors)
    index.add_with_ids(vectors[:n], np.arange(n, dtype=np.int64))
    first = faiss.serialize_index(index).size
    index.add_with_ids(vectors[n:], np.arange(n, 2 * n, dtype=np.int64))
    measured = (faiss.serialize_index(index).size - first) / n
    per_vector, _fixed = factory_memory(index)
    assert measured * 0.6 <= per_vector <= measured * 1.4, (per_vector, measured)


def test_bounds_scale_with_the_vector_size() -> None:
    assert max_bytes_per_vector(8) == 4 * 8 * 4 + 1024
    assert max_bytes_per_vector(384) == 4 * 384 * 4 + 1024
    assert MAX_FIXED_BYTES == 256 * 2 ** 20
