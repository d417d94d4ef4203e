"""Images streamed from disk: decoded (and augmented) one at a time by DataLoader workers, never all held.

A training epoch is planned in the main process: the sampler's global batches (``training.data.samplers``)
and, with augmentation, one seed per item drawn from the run's generator, then cut to this rank's slice
(``training.engine.distributed.shard``). ``PlannedBatches`` hands that plan to a ``DataLoader`` as its
``batch_sampler``; each worker decodes an item and augments it from ``np.random.default_rng(seed)``. An
item's view thus depends on the seed, the epoch and its place in the batch, never on the number of workers
or ranks, and the run's generator draws the same numbers as when it was planned in one process.

Datasets keep the paths in one numpy bytes array (no Python object per item for the workers' copy-on-write
pages to touch), so a worker's memory does not grow with the corpus either.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.index.preprocess import decode_image, image_to_array
from arcsearch.training.data.images import Augmentation, augment
from arcsearch.training.engine import distributed

NO_SEED = -1  # an item of a batch that is not augmented
MAX_DEFAULT_WORKERS = 4
EMBED_BATCH = 64  # images per batch when embedding for evaluation


def default_workers() -> int:
    """Loader worker processes when ``--workers`` is not given: min(4, usable CPUs - 1), 0 on one CPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(MAX_DEFAULT_WORKERS, cpus - 1))


class ImageFiles(Dataset):
    """Image files by position: item i is (``image_to_array`` of file i, i) for ``params`` (3, H, W) float32,
    a view augmented by ``aug`` when one is given and an item asks with a seed."""

    def __init__(self, paths: Sequence[Path | str], params: ImagePreprocessing, *,
                 aug: Augmentation | None = None) -> None:
        self.paths = np.asarray([os.fsencode(path) for path in paths], dtype=np.bytes_)  # (N,) one buffer
        self.params, self.aug = params, aug

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> Path:
        return Path(os.fsdecode(self.paths[index]))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """``key`` is a position, or (position, seed) for an augmented view (``NO_SEED``: not augmented)."""
        index, seed = key if isinstance(key, tuple) else (key, NO_SEED)
        image = decode_image(self.path(int(index)))
        if self.aug is not None and seed != NO_SEED:
            image = augment(image, self.aug, np.random.default_rng(seed))
        return torch.from_numpy(image_to_array(image, self.params)), int(index)


def plan_batch(index: np.ndarray, rng: np.random.Generator, *, augmented: bool) -> list[tuple[int, int]]:
    """This rank's (position, seed) keys of one global batch ``index`` (N,); with ``augmented`` one seed per
    item of the global batch is drawn from ``rng`` (the same draws on every rank)."""
    seeds = rng.integers(2**63, size=len(index)) if augmented else np.full(len(index), NO_SEED)
    mine, my_seeds = distributed.shard(np.asarray(index), seeds)
    return [(int(i), int(s)) for i, s in zip(mine, my_seeds, strict=True)]


class PlannedBatches(Sampler):
    """A ``batch_sampler`` whose epoch is set before each pass: ``start(order, rng)`` takes the epoch's global
    batches; iterating plans them lazily, one at a time as the loader asks (``plan_batch``), skipping global
    batches too small to give every rank an item (``distributed.keep_batch``)."""

    def __init__(self, *, augmented: bool) -> None:
        self.augmented = augmented
        self.order: Iterable[np.ndarray] = ()
        self.rng: np.random.Generator | None = None
        self.length = 0

    def start(self, order: Sequence[np.ndarray] | Iterable[np.ndarray], rng: np.random.Generator) -> None:
        self.order, self.rng = order, rng
        self.length = len(order) if isinstance(order, Sequence) else 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.rng is None:
            raise RuntimeError("PlannedBatches needs start(order, rng) before each epoch")
        for index in self.order:
            if distributed.keep_batch(index):
                yield plan_batch(index, self.rng, augmented=self.augmented)


def image_loader(dataset: Dataset, *, workers: int, device: torch.device, seed: int = 0, persistent: bool = True,
                 batch_size: int | None = None, batch_sampler: Sampler | None = None) -> DataLoader:
    """A ``DataLoader`` of (pixels (B, 3, H, W), positions (B,)) batches from ``workers`` processes (0: this
    one), kept alive between passes if ``persistent``, pinned for cuda. Its own generator (from ``seed``) leaves
    torch's global one untouched, so that a run draws the same torch numbers with and without workers."""
    batching: dict = {"batch_sampler": batch_sampler} if batch_sampler is not None else {"batch_size": batch_size}
    return DataLoader(dataset, **batching, num_workers=workers, persistent_workers=persistent and workers > 0,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))


def image_batches(paths: Sequence[Path | str], params: ImagePreprocessing, *, workers: int = 0,
                  device: torch.device | str = "cpu", batch_size: int = EMBED_BATCH) -> DataLoader:
    """(pixels (B, 3, H, W), positions (B,)) preprocessed, unaugmented batches of the files ``paths`` in order,
    as ``image_loader`` gives them; iterable more than once, its workers started for each pass."""
    return image_loader(ImageFiles(paths, params), workers=workers, device=torch.device(device), persistent=False,
                        batch_size=batch_size)
