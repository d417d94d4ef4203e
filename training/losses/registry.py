"""Objectives by name: one place that maps ``--loss`` to an ``Objective`` built from ``LossParams``.

Each margin is a ``Margin``: the scale and a target rewrite closing over its ``LossParams``; ``fraction``
(the loop's margin ramp) moves every margin toward its no-margin value: additive margins times fraction,
a multiplicative angular margin m to 1 + fraction * (m - 1).
"""

from __future__ import annotations

from collections.abc import Callable

from training.loss_params import LossParams
from training.losses.base import Objective
from training.losses.classifiers import Margin, MarginClassifier, PlainSoftmax
from training.losses.subcenter import SubCenterClassifier
from training.losses.triplet import BatchHardTriplet, ClassifierWithTriplet
from training.margins import arcface_target, combined_margin_target, cosface_target, sphereface_target
from training.partial_fc import PartialFCArcFace


def _toward_one(m: float, fraction: float) -> float:
    return 1.0 + fraction * (m - 1.0)


def _arcface_margin(p: LossParams) -> Margin:
    return Margin(p.scale, lambda cos, fraction: arcface_target(cos, margin_rad=p.margin_rad * fraction,
                                                                 easy_margin=p.easy_margin))


def _arcface(num_classes: int, dim: int, p: LossParams) -> Objective:
    return MarginClassifier(num_classes, dim, _arcface_margin(p))


def _cosface(num_classes: int, dim: int, p: LossParams) -> Objective:
    return MarginClassifier(num_classes, dim, Margin(
        p.scale, lambda cos, fraction: cosface_target(cos, margin=p.cosface_margin * fraction)))


def _sphereface(num_classes: int, dim: int, p: LossParams) -> Objective:
    return MarginClassifier(num_classes, dim, Margin(
        p.scale, lambda cos, fraction: sphereface_target(cos, m=_toward_one(p.sphereface_m, fraction))))


def _combined(num_classes: int, dim: int, p: LossParams) -> Objective:
    return MarginClassifier(num_classes, dim, Margin(
        p.scale, lambda cos, fraction: combined_margin_target(cos, m1=_toward_one(p.combined_m1, fraction),
                                                              m2=p.combined_m2 * fraction,
                                                              m3=p.combined_m3 * fraction)))


def _subcenter_arcface(num_classes: int, dim: int, p: LossParams) -> Objective:
    return SubCenterClassifier(num_classes, dim, _arcface_margin(p), subcenters=p.subcenters)


def _softmax(num_classes: int, dim: int, p: LossParams) -> Objective:
    return PlainSoftmax(num_classes, dim)


def _normalised_softmax(num_classes: int, dim: int, p: LossParams) -> Objective:
    return MarginClassifier(num_classes, dim, Margin(p.scale))


def _triplet(num_classes: int, dim: int, p: LossParams) -> Objective:
    return BatchHardTriplet(margin=p.triplet_margin)


def _arcface_triplet(num_classes: int, dim: int, p: LossParams) -> Objective:
    return ClassifierWithTriplet(_arcface(num_classes, dim, p), margin=p.triplet_margin, weight=p.triplet_weight)


def _partial_fc_arcface(num_classes: int, dim: int, p: LossParams) -> Objective:
    return PartialFCArcFace(num_classes, dim, scale=p.scale, margin_rad=p.margin_rad, easy_margin=p.easy_margin,
                            sample_rate=p.sample_rate)


LOSSES: dict[str, Callable[[int, int, LossParams], Objective]] = {
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


def build_objective(name: str, num_classes: int, embedding_dim: int, params: LossParams | None = None) -> Objective:
    """The objective called ``name`` (one of ``LOSSES``) for ``num_classes`` classes of ``embedding_dim``-d
    embeddings; ValueError names the choices for an unknown name."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name](num_classes, embedding_dim, params or LossParams())
