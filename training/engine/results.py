"""What one ``fit`` takes and gives: a batch of encoder inputs with their class indices, and ``FitResult``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

Batch = tuple[Any, torch.Tensor]  # (encoder inputs, (N,) int64 class indices)


@dataclass
class FitResult:
    """What happened: per-epoch mean loss, head accuracy (share of training samples whose highest logit is
    their class; empty for objectives without logits) and validation scores, each step's loss (the mean over
    the global batch), time spent, why it stopped. Its field names are keys of checkpoints and reports."""

    epoch_losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    epoch_head_accuracy: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    monitor_scores: list[float] = field(default_factory=list)  # e.g. held-out MAP@R per epoch; never selects
    start_validation_score: float | None = None  # the start's ("epoch 0"), a candidate like every epoch
    best_epoch: int | None = None  # 0-based; -1: the start
    steps: int = 0
    train_seconds: float = 0.0
    stop_reason: str = "epochs done"
