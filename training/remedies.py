"""Gentler fine-tuning for few training classes, and the augmentation policy, chosen on the validation data.

With few training classes, plain fine-tuning can make a pretrained encoder worse on new classes. The
well-known remedies, cheapest first (``REMEDIES``):
- ``adapter``: train only the linear projection on top of the frozen encoder (image encoders, which have one);
- ``freeze_lower``: freeze the lower half of the encoder's blocks (and a transformer's embeddings);
- ``low_lr``: a tenth of the encoder's learning rate;
- ``l2sp``: L2-SP, a pull of ``L2SP_ALPHA`` x (w - w_start) added to every encoder gradient, instead of
  weight decay toward zero (Li et al., "Explicit inductive bias for transfer learning", 2018).
Fewer epochs need no run of their own: the start and every epoch are candidates of every run
(``training.selection``). Each remedy is one more training run of the same length, so ``auto`` tries them
only under ``remedy_below_classes`` training classes; the cost is (1 + remedies) runs, logged before.

``Chooser`` trains every candidate from the same start and keeps the one whose selected weights score
highest on validation (the earlier on a tie, so plain fine-tuning wins ties); ``training.selection`` decides
which candidates a run tries.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from arcsearch.training.config import TrainConfig
    from arcsearch.training.engine.results import FitResult

logger = logging.getLogger(__name__)

REMEDIES = ("adapter", "freeze_lower", "low_lr", "l2sp")  # cheapest first
LOW_LR_FACTOR = 0.1
L2SP_ALPHA = 1.0
Undo = Callable[[], None]
FitOne = Callable[["TrainConfig"], tuple[nn.Module, "FitResult"]]  # trains the encoder in place


def check_remedies(spec: str) -> tuple[str, ...]:
    """The remedy names ``spec`` asks for (``auto``: all of ``REMEDIES``, ``none``: none, or names joined by
    commas); ValueError names an unknown one."""
    if spec in ("auto", "none"):
        return REMEDIES if spec == "auto" else ()
    names = tuple(name.strip() for name in spec.split(",") if name.strip())
    unknown = [name for name in names if name not in REMEDIES]
    if unknown or not names:
        raise ValueError(f"remedies must be auto, none or some of {', '.join(REMEDIES)} joined by commas, "
                         f"got {spec!r}")
    return names


def _freeze(modules: Sequence[nn.Module]) -> Undo:
    params = [p for module in modules for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    return lambda: [p.requires_grad_(True) for p in params] and None


def lower_blocks(encoder: nn.Module) -> list[nn.Module]:
    """The lower half of ``encoder``'s stack of blocks: an image encoder's ``features``, or a transformer's
    embeddings and the first half of its largest ``ModuleList`` of layers. ValueError if it has neither."""
    if isinstance(getattr(encoder, "features", None), nn.Sequential):
        blocks = list(encoder.features.children())
        return blocks[:len(blocks) // 2]
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m) >= 1]
    if not lists:
        raise ValueError(f"{type(encoder).__name__} has no stack of blocks to freeze the lower half of")
    layers = max(lists, key=len)
    embeddings = [m for name, m in encoder.named_modules() if name.endswith("embeddings")][:1]
    return embeddings + list(layers)[:len(layers) // 2]


def freeze_lower(encoder: nn.Module) -> Undo:
    """Freeze ``lower_blocks(encoder)``; returns the undo."""
    return _freeze(lower_blocks(encoder))


def adapter_only(encoder: nn.Module) -> Undo:
    """Freeze everything of an image encoder but its ``projection``; ValueError for encoders without one."""
    if not isinstance(getattr(encoder, "projection", None), nn.Linear):
        raise ValueError(f"{type(encoder).__name__} has no linear projection to train alone")
    return _freeze([child for name, child in encoder.named_children() if name != "projection"])


def l2_sp(encoder: nn.Module, *, alpha: float = L2SP_ALPHA) -> Undo:
    """Add ``alpha * (w - w_start)`` to the gradient of every trainable parameter (the gradient of
    ``alpha / 2 * ||w - w_start||^2``); returns the undo (removes the hooks)."""
    handles = []
    for param in (p for p in encoder.parameters() if p.requires_grad):
        start = param.detach().clone()
        handles.append(param.register_hook(lambda grad, p=param, s=start: grad + alpha * (p.detach() - s)))
    return lambda: [h.remove() for h in handles] and None


@dataclass(frozen=True)
class Candidate:
    """One way to train: config ``changes`` and a ``prepare(encoder)`` that sets the encoder up and returns
    the undo."""

    name: str
    changes: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[nn.Module], Undo] | None = None


REMEDY_CANDIDATES = {
    "adapter": lambda config: Candidate("adapter", prepare=adapter_only),
    "freeze_lower": lambda config: Candidate("freeze_lower", prepare=freeze_lower),
    "low_lr": lambda config: Candidate("low_lr", {"lr": config.lr * LOW_LR_FACTOR}),
    "l2sp": lambda config: Candidate("l2sp", {"weight_decay": 0.0}, prepare=l2_sp),
}


def selected_score(result: FitResult) -> float:
    """The validation score of the weights a run ends with: the best of its start and epochs (-inf: none)."""
    scores = [s for s in (result.start_validation_score, *result.validation_scores) if s is not None]
    return max(scores) if scores else float("-inf")


@dataclass
class Choice:
    """The winning candidate's ``name``, config ``changes``, objective and result."""

    name: str
    changes: dict[str, Any]
    objective: nn.Module
    result: FitResult


class Chooser:
    """Trains candidates one after another from the weights ``encoder`` had when made and keeps the best by
    ``selected_score`` (the earlier on a tie); ``finish`` leaves the encoder with the winner's weights.

    ``fit_one(config)`` trains the encoder in place and returns (objective, result). A candidate's changes
    are applied on top of ``base_changes`` (e.g. the augmentation policy chosen before the remedies).
    """

    def __init__(self, encoder: nn.Module, fit_one: FitOne, config: TrainConfig) -> None:
        self.encoder, self.fit_one, self.config = encoder, fit_one, config
        self.start = copy.deepcopy(encoder.state_dict())
        self.best: Choice | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.trials: list[dict[str, Any]] = []

    def try_candidate(self, candidate: Candidate, *, base_changes: dict[str, Any] | None = None) -> None:
        """Train ``candidate`` from the start; keep it if it beats the best so far. One that ``prepare``
        refuses (ValueError) is recorded as skipped."""
        self.encoder.load_state_dict(self.start)
        try:
            undo = candidate.prepare(self.encoder) if candidate.prepare is not None else (lambda: None)
        except ValueError as exc:
            logger.info("candidate %s skipped: %s", candidate.name, exc)
            self.trials.append({"name": candidate.name, "skipped": str(exc)})
            return
        changes = {**(base_changes or {}), **candidate.changes}
        started = time.perf_counter()
        try:
            objective, result = self.fit_one(dataclasses.replace(self.config, **changes))
        finally:
            undo()
        self.trials.append(_trial(candidate.name, result, time.perf_counter() - started))
        logger.info("candidate %s: validation MAP@R %.4f", candidate.name, selected_score(result))
        if self.best is None or selected_score(result) > selected_score(self.best.result):
            self.best = Choice(candidate.name, changes, objective, result)
            self.best_state = copy.deepcopy(self.encoder.state_dict())

    def finish(self) -> Choice:
        """The winner, its weights loaded into the encoder; ValueError if nothing was trained."""
        if self.best is None or self.best_state is None:
            raise ValueError("no candidate could be trained")
        self.encoder.load_state_dict(self.best_state)
        return self.best


def _trial(name: str, result: FitResult, seconds: float) -> dict[str, Any]:
    trained = max(result.validation_scores) if result.validation_scores else None
    return {"name": name, "validation_map_at_r": selected_score(result), "best_trained_map_at_r": trained,
            "best_epoch": None if result.best_epoch is None else result.best_epoch + 1, "seconds": round(seconds, 2)}
