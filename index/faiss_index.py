"""FAISS building blocks: an index from a factory string, training, adding, search parameters, selectors.

Vectors are L2-normalised and compared by inner product (= cosine similarity, in [-1, 1]).
Build stages are separate functions, as in FAISS's benchmarks::

    index = make_index(dim, "IVF64,Flat")   # factory string
    train_index(index, vectors)             # no-op unless the index needs training
    add_vectors(index, vectors)             # FAISS ids 0..n-1 = positions in the item table
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import faiss
import numpy as np

from arcsearch.index.faiss_memory import IndexMemoryError, check_codebook_bits, check_memory

logger = logging.getLogger(__name__)

FACTORY_PATTERN = re.compile(r"^[A-Za-z0-9_,.=]{1,64}$")
MAX_FACTORY_NUMBER = 65536  # no factory component may ask for more (e.g. IVF10000000 allocates lists up front)


class IndexStoreError(ValueError):
    """An index cannot be built, saved, loaded or searched as asked (bad shapes, factory, files)."""


def normalise(vectors: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 copy of (n, d) ``vectors`` with unit L2 rows (zero rows stay zero)."""
    array = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if array.ndim != 2:
        raise IndexStoreError(f"expected a 2-d array of vectors (n, d), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise IndexStoreError("vectors contain NaN or infinite values")
    faiss.normalize_L2(array)
    return array


def unit_queries(queries: np.ndarray, k: int, *, dim: int, max_k: int | None = None,
                 error: type[IndexStoreError] = IndexStoreError) -> np.ndarray:
    """(n, dim) ``queries`` as unit rows for a top-``k`` search; ``error`` when ``k`` is out of [1, max_k] or
    the dimension is not the index's."""
    if k < 1 or (max_k is not None and k > max_k):
        raise error(f"k must be from 1 to {max_k}, got {k}" if max_k is not None else f"k must be at least 1, got {k}")
    unit = normalise(queries)
    if unit.shape[1] != dim:
        raise error(f"queries have dimension {unit.shape[1]}, the index {dim}")
    return unit


def _accepts_ids(index: faiss.Index) -> bool:
    """Whether ``index.add_with_ids`` works without an IDMap wrapper."""
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIDMap | faiss.IndexIDMap2 | faiss.IndexIVF):
        return True
    if isinstance(inner, faiss.IndexPreTransform):
        return _accepts_ids(inner.index)
    return False


def make_index(dim: int, factory: str = "Flat") -> faiss.Index:
    """An empty inner-product index of dimension ``dim`` from a FAISS factory string, able to take ids."""
    if dim <= 0:
        raise IndexStoreError(f"dimension must be positive, got {dim}")
    try:
        index = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise IndexStoreError(f"FAISS cannot build factory {factory!r} for d={dim}: {exc}") from exc
    return index if _accepts_ids(index) else faiss.IndexIDMap2(index)


def check_factory(dim: int, factory: str) -> bool:
    """Raise IndexStoreError unless ``factory`` builds a d=``dim`` index; returns whether it needs training.

    Accepts only plain factory strings (letters, digits, ``_,.=``) whose numbers stay at most
    MAX_FACTORY_NUMBER and whose memory stays within the bounds of index/faiss_memory.py (bytes per vector
    relative to the float32 vector, bytes up front), so a request cannot make the server allocate gigabytes.
    """
    if not FACTORY_PATTERN.fullmatch(factory):
        raise IndexStoreError(f"index factory {factory!r} must be a FAISS factory string such as 'Flat', "
                              "'HNSW32' or 'IVF64,Flat' (letters, digits and _,.= only, at most 64 characters)")
    too_big = [n for n in re.findall(r"\d+", factory) if int(n) > MAX_FACTORY_NUMBER]
    if too_big:
        raise IndexStoreError(f"index factory {factory!r}: {too_big[0]} is larger than {MAX_FACTORY_NUMBER}")
    try:
        check_codebook_bits(dim, factory)
        index = make_index(dim, factory)
        check_memory(dim, factory, index)
    except IndexMemoryError as exc:
        raise IndexStoreError(str(exc)) from None
    return not index.is_trained


def train_index(index: faiss.Index, vectors: np.ndarray) -> None:
    """Train ``index`` on normalised (n, d) vectors if it needs training; otherwise do nothing."""
    if index.is_trained:
        return
    try:
        index.train(vectors)
    except RuntimeError as exc:
        raise IndexStoreError(f"training the index on {len(vectors)} vectors failed: {exc}") from exc
    logger.info("trained index on %d vectors", len(vectors))


def add_vectors(index: faiss.Index, vectors: np.ndarray, *, first_id: int = 0) -> None:
    """Add normalised (n, d) vectors with FAISS ids ``first_id .. first_id + n - 1``."""
    ids = np.arange(first_id, first_id + len(vectors), dtype=np.int64)
    try:
        index.add_with_ids(vectors, ids)
    except RuntimeError as exc:
        raise IndexStoreError(f"adding {len(vectors)} vectors failed: {exc}") from exc


def set_search_params(index: faiss.Index, params: str) -> None:
    """Apply a FAISS search-parameter string such as ``"nprobe=16"`` or ``"efSearch=64"``."""
    if not params:
        return
    try:
        faiss.ParameterSpace().set_index_parameters(index, params)
    except RuntimeError as exc:
        raise IndexStoreError(f"cannot apply search parameters {params!r}: {exc}") from exc


def inner_index(index: faiss.Index) -> faiss.Index:
    """The index inside an IDMap wrapper (or ``index`` itself), downcast to its concrete type."""
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIDMap | faiss.IndexIDMap2):
        return faiss.downcast_index(inner.index)
    return inner


def can_remove(index: faiss.Index) -> bool:
    """Whether FAISS can remove vectors from ``index`` (not from HNSW)."""
    return not isinstance(inner_index(index), faiss.IndexHNSW)


def search_parameters(index: faiss.Index, selector: faiss.IDSelector) -> faiss.SearchParameters:
    """Parameters that restrict a search of ``index`` to ``selector``, keeping its nprobe / efSearch."""
    inner = inner_index(index)
    if isinstance(inner, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=inner.nprobe)
    if isinstance(inner, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=inner.hnsw.efSearch)
    return faiss.SearchParameters(sel=selector)


def copy_search_params(old: faiss.Index, new: faiss.Index) -> None:
    """Carry HNSW's efSearch over to a rebuilt index."""
    old_inner, new_inner = inner_index(old), inner_index(new)
    if isinstance(old_inner, faiss.IndexHNSW) and isinstance(new_inner, faiss.IndexHNSW):
        new_inner.hnsw.efSearch = old_inner.hnsw.efSearch


def id_selector(allowed: list[int] | None, excluded: set[int]) -> faiss.IDSelector | None:
    """Only ``allowed`` ids (when given), else all but ``excluded``; None when nothing is restricted."""
    if allowed is not None:
        return faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
    if excluded:
        return faiss.IDSelectorNot(faiss.IDSelectorBatch(np.asarray(sorted(excluded), dtype=np.int64)))
    return None


def stores_exact_vectors(index: faiss.Index) -> bool:
    """Whether ``index`` keeps the added vectors uncompressed (Flat, HNSW over Flat, IVF over Flat)."""
    inner = inner_index(index)
    if isinstance(inner, faiss.IndexHNSW):
        return isinstance(faiss.downcast_index(inner.storage), faiss.IndexFlat)
    return isinstance(inner, faiss.IndexFlat | faiss.IndexIVFFlat)


def exact_search(index: faiss.Index, queries: np.ndarray, ids: Sequence[int],
                 k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``k`` best of the stored vectors with FAISS ``ids`` for each of the (n, d) normalised queries,
    scored exactly: (scores, ids), each (n, min(k, len(ids))), best first, like ``Index.search``.

    None where ``index`` does not keep vectors uncompressed or cannot give them back by id (IVF without
    a direct map): then the caller searches with a selector instead.
    """
    if not stores_exact_vectors(index):
        return None
    id_array = np.asarray(ids, dtype=np.int64)
    try:
        vectors = index.reconstruct_batch(id_array)  # (m, d)
    except RuntimeError:
        return None
    scores = queries @ vectors.T  # (n, m) cosine similarities
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), id_array[top]


def enable_reconstruct(index: faiss.Index) -> None:
    """Give an IVF index a direct map, so ``reconstruct`` and ``remove_ids`` work by id."""
    inner = inner_index(index)
    if isinstance(inner, faiss.IndexIVF) and inner.direct_map.type == faiss.DirectMap.NoMap:
        inner.set_direct_map_type(faiss.DirectMap.Hashtable)
