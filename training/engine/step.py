"""What one training step calls: the encoder under autocast plus the objective, wrapped for data parallelism."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from arcsearch.training.engine import distributed
from arcsearch.training.engine.precision import autocast
from arcsearch.training.objectives.base import Objective


class Embedding(nn.Module):
    """``embed(inputs)`` of ``encoder`` under the precision's autocast; (N, D) float32 out, so that the
    objective's margin math (acos/sqrt near +-1) runs in float32."""

    def __init__(self, encoder: nn.Module, embed: Callable[[Any], torch.Tensor], *, precision: str,
                 device: torch.device) -> None:
        super().__init__()
        self.encoder = encoder
        self._embed = embed.__call__ if isinstance(embed, nn.Module) else embed  # not registered a second time
        self._precision, self._device = precision, device

    def forward(self, inputs: Any) -> torch.Tensor:
        with autocast(self._precision, self._device):
            embeddings = self._embed(inputs)
        return embeddings.float()


class Scoring(nn.Module):
    """Embedding + objective as one module (what DDP wraps): (inputs, labels) -> (loss, logits or None)."""

    def __init__(self, embedding: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.embedding, self.objective = embedding, objective

    def forward(self, inputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        output = self.objective(self.embedding(inputs), labels)
        return output.loss, output.logits


def training_model(embedding: Embedding, objective: Objective, device: torch.device) -> nn.Module:
    """The module a step calls: DDP over embedding and objective, or over the embedding alone when the
    objective ``handles_distribution`` itself (then its gradients are left as it makes them)."""
    if getattr(objective, "handles_distribution", False):
        return Scoring(distributed.data_parallel(embedding, device), objective)
    return distributed.data_parallel(Scoring(embedding, objective), device)
