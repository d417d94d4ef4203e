"""Batch samplers that choose which classes a batch holds, with the contract of
``training.data.splits.shuffled_batches``: one epoch as a list of index arrays into the training items,
drawn from a seeded ``np.random.Generator``.

- ``pk_batches``: P classes x K samples per batch, so that every anchor has positives (triplet objectives).
- ``class_balanced_batches``: every class equally likely per draw, whatever its size (long-tailed data).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _items_by_class(codes: np.ndarray) -> list[np.ndarray]:
    """The item indices of each distinct code, in code order."""
    codes = np.asarray(codes)
    order = np.argsort(codes, kind="stable")
    _, starts = np.unique(codes[order], return_index=True)
    return np.split(order, starts[1:])


def pk_batches(codes: np.ndarray, *, classes_per_batch: int, samples_per_class: int,
               rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of max(1, N // (P * K)) batches of exactly P * K indices: P distinct classes, K items each.

    ``codes`` (N,) are the items' class codes. Classes are taken in rounds, each a fresh shuffle of all
    classes, so over an epoch class counts differ by at most one; the K items of a class are drawn without
    replacement, or with replacement where the class has fewer than K.
    """
    classes = _items_by_class(codes)
    if not 1 <= classes_per_batch <= len(classes) or samples_per_class < 1 or classes_per_batch * samples_per_class < 2:
        raise ValueError(f"need 1 <= P <= {len(classes)} classes, K >= 1 and P * K >= 2; "
                         f"got P={classes_per_batch}, K={samples_per_class}")
    num_batches = max(1, len(codes) // (classes_per_batch * samples_per_class))
    queue: list[int] = []
    batches = []
    for _ in range(num_batches):
        chosen: list[int] = []
        while len(chosen) < classes_per_batch:
            if not queue:  # a new round; classes already in this batch go last in it
                order = rng.permutation(len(classes)).tolist()
                queue = [c for c in order if c in chosen] + [c for c in order if c not in chosen]
            chosen.append(queue.pop())
        batches.append(np.concatenate([
            rng.choice(classes[c], size=samples_per_class, replace=len(classes[c]) < samples_per_class)
            for c in chosen]))
    return batches


def class_balanced_batches(codes: np.ndarray, *, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of N draws, each a class chosen uniformly and then one of its items uniformly, cut into
    batches of ``batch_size`` (a last batch of one item is dropped, as in ``shuffled_batches``)."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2, got {batch_size}")
    classes = _items_by_class(codes)
    sizes = np.array([len(items) for items in classes])
    grouped = np.concatenate(classes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    drawn = rng.integers(len(classes), size=len(codes))
    order = grouped[starts[drawn] + (rng.random(len(codes)) * sizes[drawn]).astype(np.int64)]
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return [batch for batch in batches if len(batch) >= 2]


SAMPLERS = ("auto", "shuffle", "class_balanced", "pk")
PAIR_MINING_OBJECTIVES = ("triplet", "arcface_triplet")  # need positives in every batch: P x K by default


def resolve_sampler(sampler: str, objective: str) -> str:
    """``auto`` becomes ``pk`` for the objectives that mine pairs inside a batch, ``shuffle`` otherwise; a
    sampler of ``SAMPLERS`` (``TrainConfig`` checks it) stays itself."""
    if sampler == "auto":
        return "pk" if objective in PAIR_MINING_OBJECTIVES else "shuffle"
    return sampler


def epoch_batches(sampler: str, codes: np.ndarray, *, batch_size: int, samples_per_class: int,
                  rng: np.random.Generator, shuffled: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
    """One epoch of index batches from a resolved ``sampler``: ``shuffle`` is the modality's own order
    (``shuffled()``, e.g. length buckets for texts); ``pk`` takes ``batch_size // samples_per_class``
    classes of ``samples_per_class`` items; ``class_balanced`` draws classes uniformly."""
    if sampler == "pk":
        classes = max(1, min(batch_size // samples_per_class, len(np.unique(codes))))
        return pk_batches(codes, classes_per_batch=classes, samples_per_class=samples_per_class, rng=rng)
    if sampler == "class_balanced":
        return class_balanced_batches(codes, batch_size=batch_size, rng=rng)
    if sampler == "shuffle":
        return shuffled()
    raise ValueError(f"unresolved sampler {sampler!r}; call resolve_sampler first")
