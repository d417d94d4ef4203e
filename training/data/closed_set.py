"""Closed-set split: held-out items of the training classes, beside the held-out classes of the open set.

Many users index new items of the classes they trained on rather than new classes. To measure that case a
share of each training class's items is taken out before training: never trained on, never used for
validation (validation uses its own classes, ``training.data.splits``), only indexed and queried by the
closed-set evaluation (``training.evaluation.closed_set``).

Rules, per training class of n items: ``max(1, round(fraction * n))`` items are held out, but at least
``MIN_TRAIN_ITEMS`` stay in training; a class too small to spare one (n < MIN_TRAIN_ITEMS + 1) stays whole.
A fraction of 0 holds out nothing. The choice is seeded and deterministic: the same labels, classes, fraction
and seed always hold out the same positions.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from arcsearch.training.data.splits import SplitError

MIN_TRAIN_ITEMS = 2  # items a training class keeps: a class centre from one item is a guess


def closed_set_count(num_items: int, fraction: float) -> int:
    """How many of a class's ``num_items`` are held out for the closed set (see the module's rules)."""
    if not 0.0 <= fraction < 1.0:
        raise SplitError(f"closed-set fraction must lie in [0, 1), got {fraction}")
    if fraction == 0 or num_items < MIN_TRAIN_ITEMS + 1:
        return 0
    return min(max(1, round(fraction * num_items)), num_items - MIN_TRAIN_ITEMS)


def _class_seed(seed: int, name: str) -> list[int]:
    """A seed per class that does not depend on which other classes are present (crc32 of the name)."""
    return [seed, zlib.crc32(name.encode("utf-8"))]


def split_closed_set(labels: Sequence[str], positions: np.ndarray, *, fraction: float,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split the training items at ``positions`` (into ``labels``) into (kept for training, held out for the
    closed set): two sorted (K,) and (C,) int64 arrays of corpus positions that together are ``positions``.

    Each class's items are drawn by a generator seeded with (``seed``, the class name), so a class's choice
    depends only on its own items' positions, the fraction and the seed."""
    positions = np.asarray(positions, dtype=np.int64)
    by_class: dict[str, list[int]] = {}
    for position in positions.tolist():
        by_class.setdefault(str(labels[position]), []).append(position)
    held: list[int] = []
    for name in sorted(by_class):
        members = sorted(by_class[name])
        count = closed_set_count(len(members), fraction)
        if count:
            order = np.random.default_rng(_class_seed(seed, name)).permutation(len(members))
            held += [members[i] for i in order[:count]]
    closed = np.asarray(sorted(held), dtype=np.int64)
    kept = np.setdiff1d(positions, closed).astype(np.int64)
    return kept, closed
