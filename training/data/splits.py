"""Class-disjoint splits, label maps and shuffled batches: what both trainers share.

Evaluation follows the open-set protocol: held-out classes are never seen in training. Inside the
train classes a further set of validation classes may be split off for early stopping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class SplitError(ValueError):
    """A split cannot be made, e.g. too few classes for the fractions asked for."""


@dataclass(frozen=True)
class ClassSplit:
    """Disjoint, sorted class names: ``train`` (optimised on), ``validation`` (early stopping only),
    ``holdout`` (final evaluation only)."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    holdout: tuple[str, ...]


def taken_count(num_classes: int, fraction: float, *, minimum: int = 2) -> int:
    """How many of ``num_classes`` a ``fraction`` takes: ``round(fraction * num_classes)``, at least
    ``minimum`` when the fraction is above 0."""
    return 0 if fraction == 0 else max(minimum, round(fraction * num_classes))


def _take_fraction(classes: Sequence[str], fraction: float, rng: np.random.Generator, *,
                   what: str, minimum: int = 2) -> tuple[list[str], list[str]]:
    """Split ``classes`` into (rest, taken) with ``taken_count`` taken."""
    if not 0.0 <= fraction < 1.0:
        raise SplitError(f"{what} fraction must lie in [0, 1), got {fraction}")
    count = taken_count(len(classes), fraction, minimum=minimum)
    if len(classes) - count < 2:
        raise SplitError(f"{len(classes)} classes are too few for a {what} fraction of {fraction}: "
                         f"{count} would be taken and fewer than 2 left")
    order = rng.permutation(len(classes))
    taken = sorted(classes[i] for i in order[:count])
    rest = sorted(classes[i] for i in order[count:])
    return rest, taken


def split_classes(labels: Sequence[str], *, holdout_fraction: float = 0.25, validation_fraction: float = 0.0,
                  min_validation_classes: int = 2, seed: int = 0) -> ClassSplit:
    """Seeded, deterministic split of the distinct ``labels`` into train / validation / held-out classes.

    ``holdout_fraction`` is a fraction of all classes, ``validation_fraction`` one of the remaining
    train classes (at least ``min_validation_classes`` when above 0). The held-out classes do not depend
    on the validation fraction. The same labels and seed always give the same split, whatever the label order.
    """
    classes = sorted({str(label) for label in labels})
    rng = np.random.default_rng(seed)
    rest, holdout = _take_fraction(classes, holdout_fraction, rng, what="holdout")
    train, validation = _take_fraction(rest, validation_fraction, rng, what="validation",
                                       minimum=min_validation_classes)
    return ClassSplit(train=tuple(train), validation=tuple(validation), holdout=tuple(holdout))


def indices_of(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """(K,) int64 positions of the items whose label is in ``classes``, in corpus order."""
    wanted = set(classes)
    return np.asarray([i for i, label in enumerate(labels) if label in wanted], dtype=np.int64)


def label_codes(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """(N,) int64 class index of each label in the sorted ``classes``; KeyError names an unknown label."""
    index = {name: i for i, name in enumerate(classes)}
    try:
        return np.asarray([index[label] for label in labels], dtype=np.int64)
    except KeyError as exc:
        raise KeyError(f"label {exc.args[0]!r} is not one of the {len(classes)} training classes") from exc


def shuffled_batches(num_items: int, *, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of shuffled index batches; a last batch of one item is dropped (BatchNorm needs 2)."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2, got {batch_size}")
    order = rng.permutation(num_items)
    batches = [order[start:start + batch_size] for start in range(0, num_items, batch_size)]
    return [batch for batch in batches if len(batch) >= 2]


def length_bucketed_batches(lengths: Sequence[int] | np.ndarray, *, batch_size: int, rng: np.random.Generator,
                            bucket_batches: int = 16) -> list[np.ndarray]:
    """Shuffled batches of items of similar length, so that padding to the longest costs little.

    Items are shuffled, cut into buckets of ``bucket_batches * batch_size``, sorted by length inside
    each bucket and batched; the batch order is shuffled again. Returns index arrays as
    ``shuffled_batches`` does (a last batch of one item is dropped).
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2, got {batch_size}")
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    size = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), size):
        bucket = order[start:start + size]
        bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
        batches += [bucket[i:i + batch_size] for i in range(0, len(bucket), batch_size)]
    batches = [batches[i] for i in rng.permutation(len(batches))]
    return [batch for batch in batches if len(batch) >= 2]
