"""Sub-center ArcFace (Deng et al., ECCV 2020): k centres per class, a sample's class cosine is the largest.

W has shape (C * k, D); rows c*k .. c*k + k - 1 are the sub-centres of class c (the order of
pytorch-metric-learning's ``SubCenterArcFaceLoss``, whose W is the transpose). Clean samples gather at
one dominant sub-centre per class; noisy ones at the others or far from all (``training.evaluation.mislabelled``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from arcsearch.training.objectives.base import ObjectiveOutput
from arcsearch.training.objectives.classifiers import Margin, MarginClassifier

COUNT_DECAY = 0.99  # running nearest-sub-centre counts forget with a horizon of about 100 batches
INIT_NOISE = 0.1  # norm of the seeded perturbation of each sub-centre around its class centre (~6 degrees)


class SubCenterClassifier(MarginClassifier):
    """Cross-entropy on ``margin(max_j cos(x, W_{c,j}))`` over the k sub-centres of each of C classes.

    In training mode each forward adds to ``nearest_counts`` (C, k) which sub-centre of its own class each
    sample is nearest to (decayed by ``COUNT_DECAY`` per batch); ``class_weights`` returns the dominant
    sub-centre of each class by those counts.
    """

    def __init__(self, num_classes: int, embedding_dim: int, margin: Margin, *, subcenters: int) -> None:
        if num_classes < 2 or subcenters < 1:
            raise ValueError(f"need at least 2 classes and 1 sub-centre, got {num_classes} and {subcenters}")
        super().__init__(num_classes * subcenters, embedding_dim, margin)
        self.num_classes, self.subcenters = num_classes, subcenters
        self.register_buffer("nearest_counts", torch.zeros(num_classes, subcenters))

    def subcentre_cosines(self, embeddings: Tensor) -> Tensor:
        """(N, D) embeddings -> (N, C, k) cosines to every sub-centre."""
        return super().cosine(embeddings).view(-1, self.num_classes, self.subcenters)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """(N, D) embeddings -> (N, C) cosine to the nearest sub-centre of each class."""
        return self.subcentre_cosines(embeddings).max(dim=2).values

    def forward(self, embeddings: Tensor, labels: Tensor) -> ObjectiveOutput:
        per_subcentre = self.subcentre_cosines(embeddings)
        if self.training:
            with torch.no_grad():
                own = per_subcentre[torch.arange(len(labels), device=labels.device), labels]  # (N, k)
                hits = torch.zeros_like(self.nearest_counts)
                hits.index_put_((labels, own.argmax(dim=1)), torch.ones_like(labels, dtype=hits.dtype),
                                accumulate=True)
                self.nearest_counts.mul_(COUNT_DECAY).add_(hits)
        logits = self.margin.logits(per_subcentre.max(dim=2).values, labels, self.margin_fraction)
        return ObjectiveOutput(nn.functional.cross_entropy(logits, labels), logits)

    def subcentres(self) -> Tensor:
        """(C, k, D) sub-centres, detached and unnormalised."""
        return self.weight.detach().view(self.num_classes, self.subcenters, -1)

    def class_weights(self) -> Tensor:
        """(C, D) dominant sub-centre of each class by the running counts (sub-centre 0 before training)."""
        dominant = self.nearest_counts.argmax(dim=1)
        return self.subcentres()[torch.arange(self.num_classes), dominant]

    @torch.no_grad()
    def dominant_subcentres(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(C,) index in [0, k) of the sub-centre most of each class's (N, D) ``embeddings`` are nearest to
        (0 for a class without samples)."""
        own = self.subcentre_cosines(embeddings)[torch.arange(len(labels), device=labels.device), labels]
        counts = torch.zeros(self.num_classes, self.subcenters, device=labels.device)
        counts.index_put_((labels, own.argmax(dim=1)), torch.ones(len(labels), device=labels.device),
                          accumulate=True)
        return counts.argmax(dim=1)

    @torch.no_grad()
    def init_from_centres(self, centres: Tensor, *, seed: int = 0) -> None:
        """Start all k sub-centres of each class near its normalised (C, D) centre, each moved by seeded
        noise of norm about ``INIT_NOISE`` so that they can separate."""
        if centres.shape != (self.num_classes, self.weight.shape[1]):
            raise ValueError(f"centres of shape {tuple(centres.shape)} do not fit "
                             f"{self.num_classes} classes of dim {self.weight.shape[1]}")
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(self.weight.shape, generator=gen, dtype=torch.float64) * (
            INIT_NOISE / self.weight.shape[1] ** 0.5)
        base = nn.functional.normalize(centres.double(), dim=1).repeat_interleave(self.subcenters, dim=0)
        self.weight.copy_(nn.functional.normalize(base + noise, dim=1).to(self.weight))
        self.nearest_counts.zero_()
