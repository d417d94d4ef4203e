"""The one interface every training objective implements: (embeddings, labels) -> loss (+ logits)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class ObjectiveOutput:
    """``loss``: scalar to minimise. ``logits``: (N, C) class scores where the objective has a classifier
    (used for head accuracy), None for pair-based objectives such as triplet loss."""

    loss: Tensor
    logits: Tensor | None = None


class Objective(nn.Module):
    """A training objective on (N, D) embeddings and (N,) int64 class indices in [0, num_classes).

    Its parameters (class centres, if any) are trained with the head learning rate and never exported.
    ``margin_fraction`` in [0, 1] scales a margin where the objective has one; the loop ramps it up.
    """

    margin_fraction: float = 1.0

    def forward(self, embeddings: Tensor, labels: Tensor) -> ObjectiveOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def class_weights(self) -> Tensor | None:
        """(C, D) class centres the objective learns (None if it has none), e.g. for angle statistics."""
        return None

    def reseed(self, seed: int) -> None:
        """Seed the objective's own random draws (e.g. sampled negative centres); most objectives have none."""
