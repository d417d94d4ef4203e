"""Batch-hard triplet loss (Hermans et al., 2017) on cosine distance, alone or added to a classifier."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from arcsearch.training.objectives.base import Objective, ObjectiveOutput
from arcsearch.training.objectives.classifiers import MarginClassifier


def batch_hard_triplet_loss(embeddings: Tensor, labels: Tensor, *, margin: float) -> Tensor:
    """Mean over anchors of relu(d(a, hardest positive) - d(a, hardest negative) + ``margin``).

    d is the cosine distance 1 - cos in [0, 2] between L2-normalised (N, D) ``embeddings``; ``margin`` is
    in the same unit. The hardest positive is the farthest other sample of the anchor's label, the hardest
    negative the nearest sample of another label; anchors lacking either are left out, and a batch with
    no valid anchor gives 0 with the graph attached.
    """
    if embeddings.dim() != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(f"expected embeddings (N, D) and labels (N,), got {tuple(embeddings.shape)} "
                         f"and {tuple(labels.shape)}")
    unit = nn.functional.normalize(embeddings, dim=1)
    distance = 1.0 - unit @ unit.t()  # (N, N)
    same = labels.view(-1, 1) == labels.view(1, -1)
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    hardest_positive = distance.masked_fill(~positive, -torch.inf).max(dim=1).values
    hardest_negative = distance.masked_fill(same, torch.inf).min(dim=1).values
    valid = positive.any(dim=1) & (~same).any(dim=1)
    if not valid.any():
        return embeddings.sum() * 0.0
    return torch.relu(hardest_positive[valid] - hardest_negative[valid] + margin).mean()


class BatchHardTriplet(Objective):
    """``batch_hard_triplet_loss`` as an objective: no parameters, no logits; ``margin`` in cosine distance."""

    def __init__(self, *, margin: float) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"the triplet margin must be non-negative, got {margin}")
        self.margin = margin

    def forward(self, embeddings: Tensor, labels: Tensor) -> ObjectiveOutput:
        return ObjectiveOutput(batch_hard_triplet_loss(embeddings, labels, margin=self.margin))


class ClassifierWithTriplet(Objective):
    """A margin classifier's loss + ``weight`` * batch-hard triplet loss; logits and centres are the
    classifier's, which also gets this objective's ``margin_fraction``."""

    def __init__(self, classifier: MarginClassifier, *, margin: float, weight: float) -> None:
        super().__init__()
        self.classifier = classifier
        self.triplet = BatchHardTriplet(margin=margin)
        self.triplet_weight = weight

    def forward(self, embeddings: Tensor, labels: Tensor) -> ObjectiveOutput:
        self.classifier.margin_fraction = self.margin_fraction
        output = self.classifier(embeddings, labels)
        loss = output.loss + self.triplet_weight * self.triplet(embeddings, labels).loss
        return ObjectiveOutput(loss, output.logits)

    def class_weights(self) -> Tensor:
        return self.classifier.class_weights()

    def init_from_centres(self, centres: Tensor) -> None:
        """The classifier's ``init_from_centres`` with (C, D) ``centres``."""
        self.classifier.init_from_centres(centres)
