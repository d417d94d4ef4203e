"""Names and hyper-parameters of the training objectives, free of torch so that the CLI can list them fast.

``LossParams`` is the single source of every objective's knobs: the CLI makes one ``--flag`` per field
from its ``help`` metadata, configs and reports carry it whole, and each objective reads what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOSS_NAMES = ("arcface", "softmax", "norm_softmax")


def _knob(default: float | int | bool, help_text: str) -> object:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class LossParams:
    """Hyper-parameters of all objectives (angles in radians)."""

    scale: float = _knob(30.0, "scale s of the normalised logits (margin losses and norm_softmax)")
    margin_rad: float = _knob(0.5, "ArcFace additive angular margin m, radians")
    easy_margin: bool = _knob(False, "ArcFace: apply the margin only where cos(theta) > 0")
