"""Objectives by name: one place that maps ``--loss`` to an ``Objective`` built from ``LossParams``."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from training.loss_params import LOSS_NAMES, LossParams
from training.losses.base import Objective
from training.losses.classifiers import MarginClassifier, PlainSoftmax
from training.margins import arcface_logits


def _arcface(num_classes: int, dim: int, p: LossParams) -> Objective:
    def margin(cosine: Tensor, labels: Tensor, fraction: float) -> Tensor:
        return arcface_logits(cosine, labels, scale=p.scale, margin_rad=p.margin_rad * fraction,
                              easy_margin=p.easy_margin)
    return MarginClassifier(num_classes, dim, margin)


def _normalised_softmax(num_classes: int, dim: int, p: LossParams) -> Objective:
    def no_margin(cosine: Tensor, labels: Tensor, fraction: float) -> Tensor:
        return cosine * p.scale
    return MarginClassifier(num_classes, dim, no_margin)


def _softmax(num_classes: int, dim: int, p: LossParams) -> Objective:
    return PlainSoftmax(num_classes, dim)


LOSSES: dict[str, Callable[[int, int, LossParams], Objective]] = {
    "arcface": _arcface,
    "softmax": _softmax,
    "norm_softmax": _normalised_softmax,
}


assert tuple(LOSSES) == LOSS_NAMES, "training.loss_params.LOSS_NAMES must list the objectives of LOSSES"


def build_objective(name: str, num_classes: int, embedding_dim: int, params: LossParams | None = None) -> Objective:
    """The objective called ``name`` (one of ``LOSSES``) for ``num_classes`` classes of ``embedding_dim``-d
    embeddings; ValueError names the choices for an unknown name."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name](num_classes, embedding_dim, params or LossParams())
