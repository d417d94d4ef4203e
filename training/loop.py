"""The training loop shared by images and texts: encoder + objective, AdamW, warmup + cosine decay.

Read top to bottom: ``get_lr`` (pure), ``make_optimizer``, ``fit``. The loop knows nothing of the
modality: it is given a function that yields (inputs, labels) batches and one that embeds inputs.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from training.losses import Objective

logger = logging.getLogger(__name__)

Batch = tuple[Any, torch.Tensor]  # (encoder inputs, (N,) int64 class indices)


@dataclass(frozen=True)
class FitSettings:
    """Optimisation knobs; learning rates are peak values, ``max_train_seconds`` a hard budget."""

    epochs: int
    lr: float
    head_lr: float
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    min_lr_fraction: float = 0.05
    grad_clip: float = 5.0
    margin_warmup_fraction: float = 0.0  # share of training over which a head's margin grows from 0
    max_train_seconds: float | None = None
    patience: int | None = None  # epochs without validation gain before stopping; None: never stop
    show_progress: bool = True


@dataclass
class FitResult:
    """What happened: per-epoch mean loss, head accuracy (share of training samples whose highest logit is
    their class; empty for objectives without logits) and validation scores, time spent, why it stopped."""

    epoch_losses: list[float] = field(default_factory=list)
    epoch_head_accuracy: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    steps: int = 0
    train_seconds: float = 0.0
    stop_reason: str = "epochs done"


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


def set_train_mode(encoder: nn.Module, head: nn.Module, *, freeze_batchnorm: bool) -> None:
    """Train mode; with ``freeze_batchnorm`` BatchNorm layers keep their running statistics (eval mode),
    which is what small batches of a fine-tuned pretrained backbone need."""
    encoder.train()
    head.train()
    if freeze_batchnorm:
        for module in encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def fit(encoder: nn.Module, head: Objective, *, batches: Callable[[int], Iterable[Batch]],
        embed: Callable[[Any], torch.Tensor], settings: FitSettings, steps_per_epoch: int,
        validate: Callable[[], float] | None = None, freeze_batchnorm: bool = False) -> FitResult:
    """Train ``encoder`` and the objective ``head`` (class centres, if any) on the objective's loss.

    ``batches(epoch)`` yields one epoch of batches; ``embed(inputs)`` gives (N, D) embeddings.
    The learning rate follows ``get_lr`` on progress measured in steps or, under a time budget, in
    time, whichever is further along. With ``validate`` (higher is better) the best epoch's encoder
    and head weights are restored at the end.
    """
    optimizer = make_optimizer(encoder, head, lr=settings.lr, head_lr=settings.head_lr,
                               weight_decay=settings.weight_decay)
    total_steps = max(1, settings.epochs * steps_per_epoch)
    warmup_steps = int(settings.warmup_fraction * total_steps)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    result, best_state, best_score, start = FitResult(), None, -math.inf, time.perf_counter()
    for epoch in range(settings.epochs):
        set_train_mode(encoder, head, freeze_batchnorm=freeze_batchnorm)
        losses, hits, seen, out_of_time = [], 0, 0, False
        for inputs, labels in tqdm(batches(epoch), total=steps_per_epoch, desc=f"epoch {epoch + 1}",
                                   leave=False, disable=not settings.show_progress):
            elapsed = time.perf_counter() - start
            progress = result.steps
            if settings.max_train_seconds:
                progress = max(progress, int(total_steps * elapsed / settings.max_train_seconds))
            for group in optimizer.param_groups:
                group["lr"] = get_lr(progress, max_lr=group["peak_lr"], warmup_steps=warmup_steps,
                                     total_steps=total_steps, min_lr=group["peak_lr"] * settings.min_lr_fraction)
            head.margin_fraction = get_margin_fraction(progress, warmup_steps=int(
                settings.margin_warmup_fraction * total_steps))
            output = head(embed(inputs), labels)
            loss = output.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            losses.append(float(loss.detach()))
            if output.logits is not None:
                hits += int((output.logits.detach().argmax(dim=1) == labels).sum())
                seen += len(labels)
            result.steps += 1
            if settings.max_train_seconds and time.perf_counter() - start >= settings.max_train_seconds:
                out_of_time = True
                break
        result.epoch_losses.append(sum(losses) / max(1, len(losses)))
        message = f"epoch {epoch + 1}/{settings.epochs}: loss {result.epoch_losses[-1]:.4f}"
        if seen:
            result.epoch_head_accuracy.append(hits / seen)
            message += f", head accuracy {hits / seen:.3f}"
        if validate is not None:
            score = validate()
            result.validation_scores.append(score)
            message += f", validation MAP@R {score:.4f}"
            if score > best_score:
                best_score, result.best_epoch = score, epoch
                best_state = copy.deepcopy((encoder.state_dict(), head.state_dict()))
        logger.info("%s (%.0f s)", message, time.perf_counter() - start)
        if out_of_time:
            result.stop_reason = f"time budget of {settings.max_train_seconds} s spent"
            break
        if settings.patience is not None and result.best_epoch is not None \
                and epoch - result.best_epoch >= settings.patience:
            result.stop_reason = f"no validation gain for {settings.patience} epochs"
            break
    result.train_seconds = time.perf_counter() - start
    if best_state is not None:
        encoder.load_state_dict(best_state[0])
        head.load_state_dict(best_state[1])
        logger.info("restored the weights of epoch %d (validation MAP@R %.4f)", result.best_epoch + 1, best_score)
    encoder.eval()
    head.eval()
    return result
