"""Objectives by name: one place that maps ``--loss`` to an ``Objective`` built from ``LossParams``.

Each margin is a ``MarginFunction`` closing over its ``LossParams``; ``fraction`` (the loop's margin ramp)
moves every margin toward its no-margin value: additive margins times fraction, a multiplicative angular
margin m to 1 + fraction * (m - 1).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from training.loss_params import LossParams
from training.losses.base import Objective
from training.losses.classifiers import MarginClassifier, MarginFunction, PlainSoftmax
from training.losses.subcenter import SubCenterClassifier
from training.losses.triplet import BatchHardTriplet, ClassifierWithTriplet
from training.margins import arcface_logits, combined_margin_logits, cosface_logits, sphereface_logits
from training.partial_fc import PartialFCArcFace


def _toward_one(m: float, fraction: float) -> float:
    return 1.0 + fraction * (m - 1.0)


def _arcface_margin(p: LossParams) -> MarginFunction:
    def margin(cosine: Tensor, labels: Tensor, fraction: float) -> Tensor:
        return arcface_logits(cosine, labels, scale=p.scale, margin_rad=p.margin_rad * fraction,
                              easy_margin=p.easy_margin)
    return margin


def _arcface(num_classes: int, dim: int, p: LossParams) -> Objective:
    return MarginClassifier(num_classes, dim, _arcface_margin(p))


def _cosface(num_classes: int, dim: int, p: LossParams) -> Objective:
    def margin(cosine: Tensor, labels: Tensor, fraction: float) -> Tensor:
        return cosface_logits(cosine, labels, scale=p.scale, margin=p.cosface_margin * fraction)
    return MarginClassifier(num_classes, dim, margin)


def _sphereface(num_classes: int, dim: int, p: LossParams) -> Objective:
    def margin(cosine: Tensor, labels: Tensor, fraction: float) -> Tensor:
        return sphereface_logits(cosine, labels, scale=p.scale, m=_toward_one(p.sphereface_m, fraction))
    return MarginClassifier(num_classes, dim, margin)


def _combined(num_classes: int, dim: int, p: LossParams) -> Objective:
    def margin(cosine: Tensor, labels: Tensor, fraction: float) -> Tensor:
        return combined_margin_logits(cosine, labels, scale=p.scale, m1=_toward_one(p.combined_m1, fraction),
                                      m2=p.combined_m2 * fraction, m3=p.combined_m3 * fraction)
    return MarginClassifier(num_classes, dim, margin)


def _subcenter_arcface(num_classes: int, dim: int, p: LossParams) -> Objective:
    return SubCenterClassifier(num_classes, dim, _arcface_margin(p), subcenters=p.subcenters)


def _softmax(num_classes: int, dim: int, p: LossParams) -> Objective:
    return PlainSoftmax(num_classes, dim)


def _normalised_softmax(num_classes: int, dim: int, p: LossParams) -> Objective:
    def no_margin(cosine: Tensor, labels: Tensor, fraction: float) -> Tensor:
        return cosine * p.scale
    return MarginClassifier(num_classes, dim, no_margin)


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
