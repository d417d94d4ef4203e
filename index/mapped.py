"""Reading an index file memory-mapped when it is large.

FAISS 1.15 maps with ``IO_FLAG_MMAP_IFC`` the code arrays of the index types the chooser builds: the
vectors of ``Flat`` (IndexFlatCodes), the storage of ``HNSW`` (its graph stays in memory) and the
inverted lists of every ``IVF`` index (Flat, SQ8, PQ; an OPQ matrix and the coarse centroids stay in
memory). The pages are read from the file on demand and shared by every process mapping it, so the
resident memory of a large index is what queries touch. (``IO_FLAG_MMAP`` alone maps only IVF lists, as
read-only OnDiskInvertedLists.)

A mapped index must never be written to: FAISS aborts the process on an add or a removal ("cannot be
performed on a viewed vector"). ``IndexStore`` therefore reads an in-memory copy (``read_in_memory``)
before its first upsert or delete.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss

from arcsearch.index.faiss_index import IndexStoreError, enable_reconstruct, set_search_params

logger = logging.getLogger(__name__)

MMAP_MIN_BYTES = 256 * 2 ** 20  # index files at least this large are mapped, smaller ones read into memory


def read_index_file(path: Path, *, mmap_min_bytes: int | None = MMAP_MIN_BYTES) -> tuple[faiss.Index, bool]:
    """Read the FAISS index at ``path``: (index, whether it is memory-mapped); None never maps.
    IndexStoreError for a missing or unreadable file."""
    if not Path(path).is_file():
        raise IndexStoreError(f"index bundle {Path(path).parent} lacks {Path(path).name}")
    size_bytes = Path(path).stat().st_size
    mapped = mmap_min_bytes is not None and size_bytes >= mmap_min_bytes
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC) if mapped else faiss.read_index(str(path))
    except RuntimeError as exc:  # FAISS's error for a file that is no index
        raise IndexStoreError(f"cannot read {path}: {exc}") from exc
    if mapped:
        logger.info("memory-mapped %s (%d bytes)", path, size_bytes)
    return index, mapped


def read_in_memory(path: Path, *, search_params: str) -> faiss.Index:
    """A writable in-memory copy of the index at ``path`` with ``search_params`` and (IVF) a direct map."""
    index = faiss.read_index(str(path))
    set_search_params(index, search_params)
    enable_reconstruct(index)
    logger.info("read %s into memory to change it", path)
    return index
