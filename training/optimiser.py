"""AdamW with a separate rate for the objective's class centres, and the schedules of the loop (pure)."""

from __future__ import annotations

import math

import torch
from torch import nn


def get_lr(step: float, *, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """Linear warmup to ``max_lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def get_margin_fraction(step: float, *, warmup_steps: int) -> float:
    """Share of the full margin to use at ``step``: linear from 0 to 1 over ``warmup_steps``, then 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def _decays(name: str, param: nn.Parameter) -> bool:
    return param.ndim > 1 and not name.endswith(".bias")


def make_optimizer(encoder: nn.Module, head: nn.Module, *, lr: float, head_lr: float,
                   weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the encoder at ``lr`` and the objective's parameters (``head``) at ``head_lr``; no decay
    on biases and norms.
    Each group keeps its peak rate in ``group['peak_lr']`` for the schedule."""
    named = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if _decays(n, p)], "weight_decay": weight_decay, "peak_lr": lr},
        {"params": [p for n, p in named if not _decays(n, p)], "weight_decay": 0.0, "peak_lr": lr},
        {"params": list(head.parameters()), "weight_decay": 0.0, "peak_lr": head_lr},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW([{**g, "lr": g["peak_lr"]} for g in groups])
