"""Building a training objective whose class centres may start at the mean embedding of each class."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from training.losses import LossParams, Objective, build_objective


def class_centres(embeddings: np.ndarray, codes: np.ndarray) -> Tensor:
    """(max(codes) + 1, D) sum, i.e. unnormalised mean direction, of the (N, D) embeddings of each class."""
    centres = np.zeros((int(codes.max()) + 1, embeddings.shape[1]), np.float32)
    np.add.at(centres, codes, embeddings)
    return torch.from_numpy(centres)


def make_objective(loss: str, num_classes: int, embedding_dim: int, params: LossParams, *, seed: int,
                   centres: Callable[[], Tensor] | None = None) -> Objective:
    """``build_objective``, its own random draws seeded with the run's ``seed``; an objective with normalised
    class centres starts at ``centres()`` (C, D) when that is given (computed only then, since it embeds the
    training data once)."""
    objective = build_objective(loss, num_classes, embedding_dim, params)
    objective.reseed(seed)
    init = getattr(objective, "init_from_centres", None)
    if init is not None and centres is not None:
        init(centres())
    return objective
