"""Data-parallel training under torchrun: process group set-up, per-rank batch slices, DDP wrapping.

Launch the ordinary CLI under torchrun (one process per device)::

    torchrun --nproc-per-node 2 -m arcsearch train --images photos/ --out artifacts/my_images ...

``distributed_session()`` (entered by the CLI around a training command) reads torchrun's environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), starts the process group
(nccl on cuda, gloo on cpu), pins each rank to ``cuda:LOCAL_RANK`` and quiets the logs of ranks other than 0.
Without torchrun (or with one process) every function here is a no-op and training is single-process.

Every rank draws the same random numbers, so all ranks see the same global batches (``config.batch_size``
items); rank r trains on items ``r::world`` of each (``shard``). Global batches with fewer items than ranks
are dropped on every rank (``keep_batch``). Image augmentation uses one generator per image seeded
from the shared one (``training.data.streaming.plan_batch``), so each rank augments only its own slice, and
its DataLoader workers decode only that slice.
Without augmentation a multi-rank run follows the one-process loss curve up to float rounding; with it,
it is statistically equivalent. Objectives that look across the batch (triplet mining) see only the
rank's slice. The loop averages the loss over the global batch and DDP keeps
the encoder (and the objective's class centres) in sync; an objective with ``handles_distribution = True``
(e.g. ``training.objectives.partial_fc``) does its own cross-rank communication and is neither wrapped nor averaged.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)


def is_distributed() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """Whether this process logs, evaluates, exports and writes checkpoints (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def process_group_backend(device: str, *, cuda_available: bool) -> str:
    """``nccl`` when the ranks train on cuda (``device`` ``auto`` with CUDA available, or ``cuda``), else ``gloo``."""
    return "nccl" if device != "cpu" and cuda_available else "gloo"


@contextlib.contextmanager
def distributed_session(*, device: str = "auto", timeout_minutes: float = 30.0) -> Iterator[None]:
    """Start the process group from torchrun's environment if ``WORLD_SIZE`` > 1, and end it on exit.

    ``device`` is the training's ``--device``: nccl when the ranks train on cuda (each rank on
    ``cuda:LOCAL_RANK``), gloo otherwise. Ranks other than 0 log warnings and errors only.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    from datetime import timedelta

    backend = process_group_backend(device, cuda_available=torch.cuda.is_available())
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    if dist.get_rank() != 0:
        logging.getLogger().setLevel(logging.WARNING)
    logger.info("data-parallel training on %d ranks (%s)", dist.get_world_size(), dist.get_backend())
    try:
        yield
    finally:
        dist.destroy_process_group()


def keep_batch(index: Sequence[int] | np.ndarray) -> bool:
    """Whether a global batch has at least one item for every rank (the same answer on every rank)."""
    return len(index) >= world_size()


def shard(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """This rank's slice ``[rank::world]`` of each of the (N, ...) ``arrays`` of one global batch."""
    step, start = world_size(), rank()
    return tuple(array[start::step] for array in arrays)


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """The sum over ranks of each value (float64; the values themselves when not distributed)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_max(value: float, device: torch.device) -> float:
    """The largest ``value`` over ranks, e.g. to agree on elapsed time."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def broadcast_from_main(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank, e.g. a validation score only rank 0 computed."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel (itself when not distributed).

    ``find_unused_parameters``: encoders may hold parameters used in the forward but not in the loss
    (e.g. a transformer's pooler), which plain DDP would wait for forever. The forward must return a
    tensor or a tuple of tensors for DDP to find the graph.
    """
    if not is_distributed():
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)
