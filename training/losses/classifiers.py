"""Softmax-family objectives: a class-centre matrix W and cross-entropy on (possibly margin-adjusted) logits.

``MarginClassifier`` holds normalised centres and a ``MarginFunction`` that rewrites the target logits
(ArcFace, CosFace, ...); ``PlainSoftmax`` is the unnormalised linear baseline.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from training.losses.base import Objective, ObjectiveOutput


class MarginFunction(Protocol):
    """(N, C) cosines, (N,) labels, margin share in [0, 1] -> (N, C) scaled logits."""

    def __call__(self, cosine: Tensor, labels: Tensor, fraction: float) -> Tensor: ...


class MarginClassifier(Objective):
    """Cross-entropy on ``margin(cos(normalise(x), normalise(W_j)))`` with W of shape (C, D)."""

    def __init__(self, num_classes: int, embedding_dim: int, margin: MarginFunction) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier objective needs at least 2 classes, got {num_classes}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.margin = margin

    def cosine(self, embeddings: Tensor) -> Tensor:
        """(N, D) embeddings -> (N, C) cosine similarities to the class centres."""
        return nn.functional.linear(nn.functional.normalize(embeddings, dim=1),
                                    nn.functional.normalize(self.weight, dim=1))

    def forward(self, embeddings: Tensor, labels: Tensor) -> ObjectiveOutput:
        logits = self.margin(self.cosine(embeddings), labels, self.margin_fraction)
        return ObjectiveOutput(nn.functional.cross_entropy(logits, labels), logits)

    def class_weights(self) -> Tensor:
        return self.weight.detach()

    @torch.no_grad()
    def init_from_centres(self, centres: Tensor) -> None:
        """Set W to given (C, D) class centres, e.g. mean embeddings of each class."""
        if centres.shape != self.weight.shape:
            raise ValueError(f"centres of shape {tuple(centres.shape)} do not fit W {tuple(self.weight.shape)}")
        self.weight.copy_(nn.functional.normalize(centres.to(self.weight), dim=1))


class PlainSoftmax(Objective):
    """Unnormalised softmax baseline: logits = x W^T + b, cross-entropy; no normalisation, no margin."""

    def __init__(self, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embedding_dim, num_classes)

    def forward(self, embeddings: Tensor, labels: Tensor) -> ObjectiveOutput:
        logits = self.linear(embeddings)
        return ObjectiveOutput(nn.functional.cross_entropy(logits, labels), logits)

    def class_weights(self) -> Tensor:
        return self.linear.weight.detach()
