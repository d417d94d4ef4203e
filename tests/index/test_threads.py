"""ThreadPolicy: one torch thread for a small forward pass, cores - 1 (or the number asked) for a batch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from arcsearch.index.embedder import ThreadPolicy, available_cores


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
