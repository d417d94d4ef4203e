"""What a FAISS index costs in memory: bytes per added vector and bytes allocated up front.

The numbers in a factory string do not bound its memory: ``HNSW65536`` keeps ~512 KiB of graph links per
vector, ``IVF65536`` at d=2048 holds 512 MiB of centroids, ``PQ8x24`` allocates 2^24 centroids per codebook
(8 GiB at d=128) the moment it is built. ``check_memory`` refuses a factory whose estimate passes
``max_bytes_per_vector(dim)`` (MAX_VECTOR_BYTES_RATIO x the float32 vector + VECTOR_BYTES_MARGIN) or
MAX_FIXED_BYTES up front; ``check_codebook_bits`` refuses the codebooks that would be allocated while building
the index, before it is built. The estimates follow FAISS's data structures (see ``factory_memory``) and are
checked against serialised sizes in tests/index/test_factory_memory.py.
"""

from __future__ import annotations

import re

import faiss
import numpy as np

MAX_VECTOR_BYTES_RATIO = 4  # an index may keep up to 4x the raw float32 vector per item ...
VECTOR_BYTES_MARGIN = 1024  # ... plus this (graph links, ids): HNSW64 at d=8, HNSW128 at d=128 still fit
MAX_FIXED_BYTES = 256 * 2 ** 20  # centroids, codebooks and transforms, whatever the number of vectors
ID_BYTES = 8  # an int64 id per vector (IVF lists, IDMap)
ID_MAP2_REVERSE_BYTES = 40  # IDMap2's reverse hash map: one node (key, value, next) plus a bucket per vector
INVERTED_LIST_BYTES = 48  # an empty inverted list: two std::vectors


class IndexMemoryError(ValueError):
    """A factory string builds an index that costs more memory than the bounds allow, or one we cannot bound."""


def max_bytes_per_vector(dim: int) -> int:
    """The most bytes an index may keep per d=``dim`` vector."""
    return MAX_VECTOR_BYTES_RATIO * 4 * dim + VECTOR_BYTES_MARGIN


def check_codebook_bits(dim: int, factory: str) -> None:
    """Refuse ``<M>x<bits>`` codebooks (PQ, RQ, PRQ, ...) whose 2^bits centroids of one codebook over d=``dim``
    would pass MAX_FIXED_BYTES: PQ allocates them when the index is built, so check before building."""
    for bits in re.findall(r"x(\d+)", factory):
        fixed_bytes = 4 * dim * 2 ** min(int(bits), 64)
        if fixed_bytes > MAX_FIXED_BYTES:
            raise IndexMemoryError(
                f"index factory {factory!r}: x{bits} asks for 2^{bits} centroids per codebook, about {fixed_bytes} "
                f"bytes up front at d={dim}, more than the bound of {MAX_FIXED_BYTES}; use at most 8-16 bits")


def _hnsw_link_bytes(hnsw: faiss.HNSW) -> float:
    """Expected bytes of graph links per vector: neighbours of each level times the chance to reach it (int32 ids),
    plus the vector's level (int32) and its offset into the links (size_t)."""
    level_probas = faiss.vector_to_array(hnsw.assign_probas)  # P(level == l)
    reach = np.cumsum(level_probas[::-1])[::-1]  # P(level >= l)
    neighbours = sum(hnsw.nb_neighbors(level) * float(p) for level, p in enumerate(reach))
    return 4 * neighbours + 4 + 8


def _codebook_bytes(index: faiss.Index) -> int:
    """Bytes of the product / additive quantizer codebooks an index holds (0 if none)."""
    pq = getattr(index, "pq", None)
    if isinstance(pq, faiss.ProductQuantizer):
        return 4 * pq.M * pq.ksub * pq.dsub
    aq = getattr(index, "aq", None)
    if isinstance(aq, faiss.AdditiveQuantizer):
        return 4 * aq.total_codebook_size * aq.d
    return 0


def _transform_bytes(index: faiss.IndexPreTransform) -> int:
    """Bytes of the matrices of a pre-transform chain (PCA, OPQ, random rotation: d_in x d_out floats)."""
    total = 0
    for i in range(index.chain.size()):
        transform = faiss.downcast_VectorTransform(index.chain.at(i))
        if isinstance(transform, faiss.LinearTransform):
            total += 4 * transform.d_in * transform.d_out
    return total


def factory_memory(index: faiss.Index) -> tuple[float, float]:
    """(bytes per added vector, bytes up front) of an index as built by ``make_index`` (trained or not).

    IndexStoreError-like IndexMemoryError for an index type whose memory we do not know how to bound.
    """
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexIDMap2 | faiss.IndexIDMap):
        per, fixed = factory_memory(idx.index)
        reverse = ID_MAP2_REVERSE_BYTES if isinstance(idx, faiss.IndexIDMap2) else 0
        return per + ID_BYTES + reverse, fixed
    if isinstance(idx, faiss.IndexPreTransform):
        per, fixed = factory_memory(idx.index)
        return per, fixed + _transform_bytes(idx)
    if isinstance(idx, faiss.IndexRefine):
        base, refine = factory_memory(idx.base_index), factory_memory(idx.refine_index)
        return base[0] + refine[0], base[1] + refine[1]
    if isinstance(idx, faiss.IndexHNSW):
        per, fixed = factory_memory(idx.storage)
        return per + _hnsw_link_bytes(idx.hnsw), fixed
    if isinstance(idx, faiss.IndexNSG):
        per, fixed = factory_memory(idx.storage)
        return per + 4 * idx.nsg.R, fixed
    if isinstance(idx, faiss.IndexIVF):
        centroid, quantizer_fixed = factory_memory(idx.quantizer)
        lists = idx.nlist * (centroid + INVERTED_LIST_BYTES)
        return idx.code_size + ID_BYTES, quantizer_fixed + lists + _codebook_bytes(idx)
    code_size = getattr(idx, "code_size", None)
    if isinstance(code_size, int) and code_size > 0:
        return code_size, _codebook_bytes(idx)
    raise IndexMemoryError(f"cannot bound the memory of a FAISS {type(idx).__name__}; use Flat, HNSW, NSG, IVF, "
                           "PQ, SQ or RQ factories")


def check_memory(dim: int, factory: str, index: faiss.Index) -> None:
    """Refuse ``index`` (built from ``factory`` at d=``dim``) if it passes the per-vector or up-front bound."""
    per, fixed = factory_memory(index)
    bound = max_bytes_per_vector(dim)
    if per > bound:
        raise IndexMemoryError(
            f"index factory {factory!r} keeps about {per:.0f} bytes per vector at d={dim}, more than the bound "
            f"of {bound} ({MAX_VECTOR_BYTES_RATIO} x the {4 * dim}-byte float32 vector + {VECTOR_BYTES_MARGIN}); "
            "use a smaller graph (e.g. HNSW32) or a compressed code (PQ, SQ8)")
    if fixed > MAX_FIXED_BYTES:
        raise IndexMemoryError(
            f"index factory {factory!r} allocates about {fixed:.0f} bytes up front at d={dim} (centroids, "
            f"codebooks, transforms), more than the bound of {MAX_FIXED_BYTES}; use fewer IVF lists or codebook bits")
