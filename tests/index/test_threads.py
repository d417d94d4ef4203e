"""ThreadPolicy and SearchThreads: one torch / OpenMP thread for a small forward pass or search, cores - 1 (or the
number asked) for a batch."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import faiss
import pytest
import torch

from arcsearch.index.embedder import ThreadPolicy, available_cores
from arcsearch.index.threads import SearchThreads

T = TypeVar("T")


@pytest.fixture()
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("restore_threads")
def test_small_passes_run_on_one_thread_batches_on_the_other_cores() -> None:
    policy = ThreadPolicy(threads=0, parallel_min_batch=4)
    policy.apply(1)
    assert torch.get_num_threads() == 1
    policy.apply(4)
    assert torch.get_num_threads() == max(1, available_cores() - 1)
    ThreadPolicy(threads=3, parallel_min_batch=2).apply(2)
    assert torch.get_num_threads() == 3


@pytest.mark.usefixtures("restore_threads")
def test_a_zero_min_batch_leaves_torch_alone() -> None:
    torch.set_num_threads(2)
    ThreadPolicy(threads=5, parallel_min_batch=0).apply(100)
    ThreadPolicy(parallel_min_batch=0).apply(1)
    assert torch.get_num_threads() == 2


def in_fresh_thread(work: Callable[[], T]) -> T:
    """``work()`` run in a new thread (OpenMP keeps its thread count per thread), its result returned."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(work()))
    thread.start()
    thread.join()
    return results[0]


def test_faiss_searches_of_few_vectors_run_on_one_thread_batches_on_the_other_cores() -> None:
    def threads_after(policy: SearchThreads, queries: int) -> int:
        faiss.omp_set_num_threads(7)
        policy.apply(queries)
        return faiss.omp_get_max_threads()

    assert in_fresh_thread(lambda: threads_after(SearchThreads(threads=0, parallel_min_batch=4), 3)) == 1
    assert in_fresh_thread(lambda: threads_after(SearchThreads(threads=0, parallel_min_batch=4), 4)) == max(
        1, available_cores() - 1)
    assert in_fresh_thread(lambda: threads_after(SearchThreads(threads=3, parallel_min_batch=2), 2)) == 3
    assert in_fresh_thread(lambda: threads_after(SearchThreads(threads=3, parallel_min_batch=0), 1)) == 7


def test_faiss_thread_counts_are_per_thread_so_they_are_set_where_the_search_runs() -> None:
    before = faiss.omp_get_max_threads()
    in_fresh_thread(lambda: SearchThreads(threads=0, parallel_min_batch=4).apply(1))
    assert faiss.omp_get_max_threads() == before
