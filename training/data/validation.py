"""Where a run's validation comes from: classes carved out of the training classes, or, when those are too
few, items of the training classes; what model selection (``training.selection``) scores on.

The default carves ``validation_fraction`` (15 %) of the training classes, at least ``min_validation_classes``
(3), as in the open-set protocol of the held-out classes. If that would leave fewer than
``MIN_TRAIN_CLASSES`` to train on, the run says so and keeps ``validation_fraction`` of the items of every
training class with at least ``MIN_ITEMS_FOR_VALIDATION`` items instead (at least 2 per class, so that
each has a positive to find); those items are never trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from arcsearch.training.data.splits import ClassSplit, indices_of, split_classes, taken_count

logger = logging.getLogger(__name__)

MIN_TRAIN_CLASSES = 4  # carving validation classes must leave at least this many to train on
MIN_ITEMS_FOR_VALIDATION = 4  # a class gives validation items only if it has this many
VALIDATION_MODES = ("classes", "items", "none")


@dataclass(frozen=True)
class TrainingSplit:
    """The class split and the (K,) int64 corpus positions of each part: ``train`` (optimised on),
    ``validation`` (model selection only), ``held`` (final evaluation only). ``mode`` says what the
    validation is (``VALIDATION_MODES``); ``note`` says why, in words."""

    classes: ClassSplit
    train: np.ndarray
    validation: np.ndarray
    held: np.ndarray
    mode: str
    note: str
    validation_classes: int = 0  # classes the validation items belong to

    def summary(self) -> dict[str, object]:
        """JSON-ready: the mode, how many classes and items validate, and the note."""
        return {"mode": self.mode, "classes": self.validation_classes, "items": int(self.validation.size),
                "note": self.note}


def validation_items(labels: Sequence[str], train: np.ndarray, *, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions: ``fraction`` of the items (at least 2) of each class of ``train`` (the
    positions of the training items) with at least ``MIN_ITEMS_FOR_VALIDATION`` items, seeded."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for position in train.tolist():
        by_class.setdefault(str(labels[position]), []).append(position)
    taken: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        if len(members) >= MIN_ITEMS_FOR_VALIDATION:
            count = min(len(members) - 2, max(2, round(fraction * len(members))))
            taken += [members[i] for i in rng.permutation(len(members))[:count]]
    chosen = set(taken)
    kept = np.asarray([p for p in train.tolist() if p not in chosen], dtype=np.int64)
    return kept, np.asarray(sorted(chosen), dtype=np.int64)


def plan_split(labels: Sequence[str], *, holdout_fraction: float, validation_fraction: float,
               min_validation_classes: int, seed: int) -> TrainingSplit:
    """Held-out, training and validation parts of a labelled corpus (see the module's docstring)."""
    base = split_classes(labels, holdout_fraction=holdout_fraction, seed=seed)
    held, train = indices_of(labels, base.holdout), indices_of(labels, base.train)
    empty = np.zeros(0, dtype=np.int64)
    if validation_fraction <= 0:
        return TrainingSplit(base, train, empty, held, "none", "no validation (validation fraction 0): the last "
                             "epoch is exported unchecked")
    count = taken_count(len(base.train), validation_fraction, minimum=min_validation_classes)
    if len(base.train) - count >= MIN_TRAIN_CLASSES:
        split = split_classes(labels, holdout_fraction=holdout_fraction, validation_fraction=validation_fraction,
                              min_validation_classes=min_validation_classes, seed=seed)
        return TrainingSplit(split, indices_of(labels, split.train), indices_of(labels, split.validation), held,
                             "classes", f"{len(split.validation)} validation classes carved out of "
                             f"{len(base.train)} training classes", len(split.validation))
    kept, validation = validation_items(labels, train, fraction=validation_fraction, seed=seed)
    why = (f"{len(base.train)} training classes are too few to carve {count} validation classes out of them and "
           f"keep {MIN_TRAIN_CLASSES} to train on")
    if not validation.size:
        logger.warning("%s, and no class has %d items to spare: no validation", why, MIN_ITEMS_FOR_VALIDATION)
        return TrainingSplit(base, train, empty, held, "none", f"{why}, and no class has "
                             f"{MIN_ITEMS_FOR_VALIDATION} items to spare: the last epoch is exported unchecked")
    note = f"{why}: validating on {validation.size} held-back items of the training classes instead"
    logger.warning("%s", note)
    return TrainingSplit(base, kept, validation, held, "items", note,
                         len({str(labels[p]) for p in validation.tolist()}))
