"""Classification heads used only while training; the exported embedder never contains them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from training.margins import arcface_logits


class ArcFaceHead(nn.Module):
    """Class centres W (num_classes, dim); logits = ArcFace(cos(normalise(x), normalise(W_j))).

    ``margin_fraction`` in [0, 1] scales the margin; the training loop ramps it up from 0 (margin
    warmup), which lets encoders trained from scratch converge.
    """

    def __init__(self, num_classes: int, embedding_dim: int, *, scale: float = 30.0, margin_rad: float = 0.5,
                 easy_margin: bool = False) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"an ArcFace head needs at least 2 classes, got {num_classes}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale = scale
        self.margin_rad = margin_rad
        self.easy_margin = easy_margin
        self.margin_fraction = 1.0

    def cosine(self, embeddings: Tensor) -> Tensor:
        """(N, dim) embeddings -> (N, num_classes) cosine similarities to the class centres."""
        return nn.functional.linear(nn.functional.normalize(embeddings, dim=1),
                                    nn.functional.normalize(self.weight, dim=1))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(N, dim) embeddings and (N,) class indices -> (N, num_classes) scaled logits with margin."""
        return arcface_logits(self.cosine(embeddings), labels, scale=self.scale,
                              margin_rad=self.margin_rad * self.margin_fraction, easy_margin=self.easy_margin)

    @torch.no_grad()
    def init_from_centres(self, centres: Tensor) -> None:
        """Set W to given (num_classes, dim) class centres, e.g. mean embeddings of each class."""
        if centres.shape != self.weight.shape:
            raise ValueError(f"centres of shape {tuple(centres.shape)} do not fit W {tuple(self.weight.shape)}")
        self.weight.copy_(nn.functional.normalize(centres.to(self.weight), dim=1))


class SoftmaxHead(nn.Module):
    """Plain softmax baseline: an unnormalised linear layer (N, dim) -> (N, num_classes); labels unused."""

    def __init__(self, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embedding_dim, num_classes)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.linear(embeddings)


def build_head(kind: str, num_classes: int, embedding_dim: int, *, scale: float = 30.0,
               margin_rad: float = 0.5, easy_margin: bool = False) -> nn.Module:
    """``kind`` is ``arcface`` or ``softmax``."""
    if kind == "arcface":
        return ArcFaceHead(num_classes, embedding_dim, scale=scale, margin_rad=margin_rad,
                           easy_margin=easy_margin)
    if kind == "softmax":
        return SoftmaxHead(num_classes, embedding_dim)
    raise ValueError(f"unknown head {kind!r}; choose arcface or softmax")


def class_centres(embeddings: np.ndarray, codes: np.ndarray) -> Tensor:
    """(max(codes) + 1, D) sum, i.e. unnormalised mean direction, of the (N, D) embeddings of each class."""
    centres = np.zeros((int(codes.max()) + 1, embeddings.shape[1]), np.float32)
    np.add.at(centres, codes, embeddings)
    return torch.from_numpy(centres)


def make_head(kind: str, num_classes: int, embedding_dim: int, *, scale: float, margin_rad: float,
              easy_margin: bool, centres: Callable[[], Tensor] | None = None) -> nn.Module:
    """``build_head``; an ArcFace head starts at ``centres()`` (num_classes, D) when that is given
    (computed only then, since it embeds the training data once)."""
    head = build_head(kind, num_classes, embedding_dim, scale=scale, margin_rad=margin_rad,
                      easy_margin=easy_margin)
    if isinstance(head, ArcFaceHead) and centres is not None:
        head.init_from_centres(centres())
    return head
