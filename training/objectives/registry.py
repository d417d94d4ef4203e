"""Objectives by name: one place that maps a name (the ``--loss`` flag) to an ``Objective`` built from
``ObjectiveParams``; ``make_objective`` builds one as a training run starts it.

Each margin is a ``Margin``: the scale and a target rewrite closing over its ``ObjectiveParams``; ``fraction``
(the loop's margin ramp) moves every margin toward its no-margin value: additive margins times fraction,
a multiplicative angular margin m to 1 + fraction * (m - 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from arcsearch.training.objectives.base import Objective
from arcsearch.training.objectives.classifiers import Margin, MarginClassifier, PlainSoftmax
from arcsearch.training.objectives.margins import (
    arcface_target,
    combined_margin_target,
    cosface_target,
    sphereface_target,
)
from arcsearch.training.objectives.params import ObjectiveParams
from arcsearch.training.objectives.partial_fc import PartialFCArcFace
from arcsearch.training.objectives.subcenter import SubCenterClassifier
from arcsearch.training.objectives.triplet import BatchHardTriplet, ClassifierWithTriplet


def _toward_one(m: float, fraction: float) -> float:
    return 1.0 + fraction * (m - 1.0)


def _arcface_margin(p: ObjectiveParams) -> Margin:
    return Margin(p.scale, lambda cos, fraction: arcface_target(cos, margin_rad=p.margin_rad * fraction,
                                                                 easy_margin=p.easy_margin))


def _arcface(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return MarginClassifier(num_classes, dim, _arcface_margin(p))


def _cosface(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return MarginClassifier(num_classes, dim, Margin(
        p.scale, lambda cos, fraction: cosface_target(cos, margin=p.cosface_margin * fraction)))


def _sphereface(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return MarginClassifier(num_classes, dim, Margin(
        p.scale, lambda cos, fraction: sphereface_target(cos, m=_toward_one(p.sphereface_m, fraction))))


def _combined(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return MarginClassifier(num_classes, dim, Margin(
        p.scale, lambda cos, fraction: combined_margin_target(cos, m1=_toward_one(p.combined_m1, fraction),
                                                              m2=p.combined_m2 * fraction,
                                                              m3=p.combined_m3 * fraction)))


def _subcenter_arcface(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return SubCenterClassifier(num_classes, dim, _arcface_margin(p), subcenters=p.subcenters)


def _softmax(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return PlainSoftmax(num_classes, dim)


def _normalised_softmax(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return MarginClassifier(num_classes, dim, Margin(p.scale))


def _triplet(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return BatchHardTriplet(margin=p.triplet_margin)


def _arcface_triplet(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return ClassifierWithTriplet(_arcface(num_classes, dim, p), margin=p.triplet_margin, weight=p.triplet_weight)


def _partial_fc_arcface(num_classes: int, dim: int, p: ObjectiveParams) -> Objective:
    return PartialFCArcFace(num_classes, dim, scale=p.scale, margin_rad=p.margin_rad, easy_margin=p.easy_margin,
                            sample_rate=p.sample_rate)


OBJECTIVES: dict[str, Callable[[int, int, ObjectiveParams], Objective]] = {
    "arcface": _arcface,
    "cosface": _cosface,
    "sphereface": _sphereface,
    "combined": _combined,
    "subcenter_arcface": _subcenter_arcface,
    "softmax": _softmax,
    "norm_softmax": _normalised_softmax,
    "triplet": _triplet,
    "arcface_triplet": _arcface_triplet,
    "partial_fc_arcface": _partial_fc_arcface,
}


def build_objective(name: str, num_classes: int, embedding_dim: int,
                    params: ObjectiveParams | None = None) -> Objective:
    """The objective called ``name`` (one of ``OBJECTIVES``) for ``num_classes`` classes of ``embedding_dim``-d
    embeddings; ValueError names the choices for an unknown name."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name](num_classes, embedding_dim, params or ObjectiveParams())


def class_centres(chunks: Iterable[tuple[np.ndarray, np.ndarray]], *, num_classes: int) -> Tensor:
    """(num_classes, D) sum, i.e. unnormalised mean direction, of the embeddings of each class, from chunks of
    ((n, D) embeddings, (n,) class codes) taken one at a time (the sums do not depend on the chunking)."""
    centres: np.ndarray | None = None
    for embeddings, codes in chunks:
        if centres is None:
            centres = np.zeros((num_classes, embeddings.shape[1]), np.float32)
        np.add.at(centres, codes, embeddings)
    if centres is None:
        raise ValueError("class centres need at least one embedding")
    return torch.from_numpy(centres)


def make_objective(name: str, num_classes: int, embedding_dim: int, params: ObjectiveParams, *, seed: int,
                   centres: Callable[[], Tensor] | None = None) -> Objective:
    """``build_objective``, its own random draws seeded with the run's ``seed``; an objective with normalised
    class centres starts at ``centres()`` (C, D) when that is given (computed only then, since it embeds the
    training data once)."""
    objective = build_objective(name, num_classes, embedding_dim, params)
    objective.reseed(seed)
    init = getattr(objective, "init_from_centres", None)
    if init is not None and centres is not None:
        init(centres())
    return objective
