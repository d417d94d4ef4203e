"""Mixed precision for the training loop, and the guard that stops it when the numbers go bad.

``fp32``: plain float32. ``bf16``: the encoder's forward under ``torch.autocast`` in bfloat16 (cpu or cuda).
``fp16``: autocast in float16 with a ``torch.amp.GradScaler`` (cuda only). The objective (margin math:
acos/sqrt near +-1) always runs in float32 on float32 embeddings; the loop sees to that. Which precision
a device allows is checked where the configuration is made (``training.config``).
"""

from __future__ import annotations

import contextlib
import math
from contextlib import AbstractContextManager

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
MAX_SKIPPED_STEPS = 20  # consecutive fp16 steps skipped for inf/nan gradients before training is declared diverged

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became non-finite; training stopped before stepping on them.

    ``step`` is the 0-based optimisation step, ``loss`` that step's loss value.
    """

    def __init__(self, step: int, loss: float, what: str) -> None:
        self.step, self.loss = step, loss
        super().__init__(
            f"training diverged at step {step}: {what} (loss {loss!r}). Try a lower --lr and/or --head-lr, a "
            "lower --scale, a longer margin warmup (--margin-warmup-fraction), or --precision fp32.")


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The context the encoder's forward runs in: autocast to bf16/fp16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (None otherwise: bf16 has float32's exponent range)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


class DivergenceGuard:
    """Decides, step by step, whether training may go on.

    A non-finite loss always stops training. Non-finite gradients stop it too, except under fp16 with a
    ``GradScaler`` (``scaled``), where a step skipped for inf gradients is how the scale finds its level;
    there only ``max_skipped`` such steps in a row stop it.
    """

    def __init__(self, *, scaled: bool, max_skipped: int = MAX_SKIPPED_STEPS) -> None:
        self.scaled, self.max_skipped, self.skipped = scaled, max_skipped, 0

    def check_loss(self, step: int, loss: float) -> None:
        """Raise ``TrainingDiverged`` if ``loss`` is nan or inf."""
        if not math.isfinite(loss):
            raise TrainingDiverged(step, loss, "the loss is not finite")

    def check_gradients(self, step: int, loss: float, grad_norm: float) -> None:
        """Raise ``TrainingDiverged`` on a non-finite gradient norm (unscaled), or on too many skipped steps."""
        if math.isfinite(grad_norm):
            self.skipped = 0
            return
        if not self.scaled:
            raise TrainingDiverged(step, loss, f"the gradient norm is {grad_norm}")
        self.skipped += 1
        if self.skipped >= self.max_skipped:
            raise TrainingDiverged(step, loss, f"{self.skipped} steps in a row had inf/nan gradients under fp16 "
                                               "loss scaling")
