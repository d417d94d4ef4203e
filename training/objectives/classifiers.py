"""Softmax-family objectives: a class-centre matrix W and cross-entropy on (possibly margin-adjusted) logits.

``MarginClassifier`` holds the centres and a ``Margin`` (the scale s and the rewrite of each row's target
cosine: ArcFace, CosFace, ...); ``PlainSoftmax`` is the unnormalised linear baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from arcsearch.training.objectives.base import Objective, ObjectiveOutput
from arcsearch.training.objectives.margins import target_cosines, with_targets

TargetRewrite = Callable[[Tensor, float], Tensor]
"""(N,) cosines of each row's own class, margin share in [0, 1] -> (N,) target logits before the scale."""


@dataclass(frozen=True)
class Margin:
    """The scale s of the normalised logits and the rewrite of the target cosines (None: no margin)."""

    scale: float
    target: TargetRewrite | None = None

    def logits(self, cosine: Tensor, labels: Tensor, fraction: float) -> Tensor:
        """(N, C) cosines, (N,) labels -> (N, C) logits: s * cos, with s * target(cos_y) at each label."""
        if self.target is None:
            return cosine * self.scale
        return with_targets(cosine, labels, self.target(target_cosines(cosine, labels), fraction), self.scale)


class MarginClassifier(Objective):
    """Cross-entropy on ``margin(cos(normalise(x), normalise(W_j)))`` with W of shape (C, D)."""

    def __init__(self, num_classes: int, embedding_dim: int, margin: Margin) -> None:
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
        """Logits s * cos from one matmul of the scaled (N, D) embeddings with the normalised centres; the N
        target entries are then overwritten in place with s * target(cos_y), cos_y from a row-wise dot
        product. No further pass over the (N, C) matrix: this step costs what normalised softmax costs."""
        if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(f"expected labels (N,) for embeddings {tuple(embeddings.shape)}, "
                             f"got {tuple(labels.shape)}")
        unit = nn.functional.normalize(embeddings, dim=1)
        centres = nn.functional.normalize(self.weight, dim=1)
        logits = nn.functional.linear(unit * self.margin.scale, centres)
        if self.margin.target is not None:
            # the matmul's backward needs its inputs, not its output, so the output may be written in place
            target_cos = (unit * centres[labels]).sum(dim=1)
            target = self.margin.target(target_cos, self.margin_fraction) * self.margin.scale
            logits = logits.scatter_(1, labels.view(-1, 1), target.unsqueeze(1).to(logits.dtype))
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
