"""AdamW with a separate rate for the objective's class centres, and the schedules of the loop (pure)."""

from __future__ import annotations

import math

import torch
from torch import nn

LR_SCHEDULES = ("cosine", "poly")
POLY_POWER = 2.0  # insightface's arcface_torch decays its learning rate with (1 - progress)^2
MIN_LR_FRACTION = 0.05  # the schedules end at this share of each peak rate


def get_lr(step: float, *, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float,
           schedule: str = "cosine") -> float:
    """Linear warmup to ``max_lr`` over ``warmup_steps``, then decay to ``min_lr`` at ``total_steps``:
    ``cosine`` (half a cosine) or ``poly`` (``(1 - progress) ** POLY_POWER``)."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    remaining = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else (1.0 - progress) ** POLY_POWER
    return min_lr + remaining * (max_lr - min_lr)


def get_margin_fraction(step: float, *, warmup_steps: int) -> float:
    """Share of the full margin to use at ``step``: linear from 0 to 1 over ``warmup_steps``, then 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def _decays(name: str, param: nn.Parameter) -> bool:
    return param.ndim > 1 and not name.endswith(".bias")


def make_optimiser(encoder: nn.Module, objective: nn.Module, *, lr: float, head_lr: float,
                   weight_decay: float, head_weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW with the encoder at ``lr`` and decay ``weight_decay`` (none on biases and norms), and the
    ``objective``'s parameters (its class centres, the "head") at ``head_lr`` and ``head_weight_decay``.
    Each group keeps its peak rate in ``group['peak_lr']`` for the schedule."""
    named = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if _decays(n, p)], "weight_decay": weight_decay, "peak_lr": lr},
        {"params": [p for n, p in named if not _decays(n, p)], "weight_decay": 0.0, "peak_lr": lr},
        {"params": list(objective.parameters()), "weight_decay": head_weight_decay, "peak_lr": head_lr},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW([{**g, "lr": g["peak_lr"]} for g in groups])
