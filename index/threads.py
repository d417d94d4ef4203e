"""CPU threads of FAISS searches (and the core count that torch's ThreadPolicy in index.embedder reads too)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import faiss


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class SearchThreads:
    """OpenMP threads of a FAISS search: one for fewer than ``parallel_min_batch`` query vectors, else ``threads``
    (0: one less than the CPU cores available, at least one); ``parallel_min_batch`` 0 leaves FAISS's setting.

    FAISS's default is a thread per core, and even a one-vector search opens a parallel region (IndexIDMap's id
    translation): its threads wait for a free core, then spin. On 2 busy cores that made a single HNSW search
    take 16 ms instead of 1 ms in-process, and cost the service ~9 ms of CPU per vector query instead of ~3.
    OpenMP keeps the setting per calling thread, so ``apply`` goes right before each search, in the thread that
    searches.
    """

    threads: int = 0
    parallel_min_batch: int = 4

    def wanted(self, queries: int) -> int | None:
        """OpenMP threads for a search of ``queries`` vectors (None: leave FAISS's setting alone)."""
        if self.parallel_min_batch <= 0:
            return None
        if queries < self.parallel_min_batch:
            return 1
        return self.threads or max(1, available_cores() - 1)

    def apply(self, queries: int) -> None:
        """Set the calling thread's OpenMP threads for a search of ``queries`` vectors."""
        wanted = self.wanted(queries)
        if wanted is not None and faiss.omp_get_max_threads() != wanted:
            faiss.omp_set_num_threads(wanted)
