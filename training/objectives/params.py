"""Names and hyper-parameters of the training objectives, free of torch so that the CLI can list them fast.

``ObjectiveParams`` is the single source of every objective's knobs: the CLI makes one ``--flag`` per field
from its ``help`` metadata, configs and reports carry it whole, and each objective reads what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OBJECTIVE_NAMES = ("arcface", "cosface", "sphereface", "combined", "subcenter_arcface", "softmax", "norm_softmax",
                   "triplet", "arcface_triplet", "partial_fc_arcface")
# ArcFace with its class centres sharded across torchrun ranks: in one process it is ArcFace itself,
# so ``arcsearch compare --losses all`` leaves it out.
SHARDED_OBJECTIVES = ("partial_fc_arcface",)


def _knob(default: float | int | bool, help_text: str) -> object:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class ObjectiveParams:
    """Hyper-parameters of all objectives (angles in radians)."""

    scale: float = _knob(30.0, "scale s of the normalised logits (margin losses and norm_softmax)")
    margin_rad: float = _knob(0.5, "ArcFace additive angular margin m, radians (also subcenter_arcface, "
                                   "arcface_triplet, partial_fc_arcface)")
    easy_margin: bool = _knob(False, "ArcFace and its variants: apply the margin only where cos(theta) > 0")
    cosface_margin: float = _knob(0.35, "CosFace additive cosine margin m: target logit cos(theta) - m "
                                        "(a cosine, not an angle)")
    sphereface_m: float = _knob(1.35, "SphereFace multiplicative angular margin m >= 1: target cos(m theta) "
                                      "(extended to keep falling past theta = pi/m) on normalised features, no "
                                      "annealing (1.35 as in the ArcFace paper; the original m=4 needs "
                                      "unnormalised features and annealing)")
    combined_m1: float = _knob(1.0, "combined margin cos(m1 theta + m2) - m3: multiplicative angular m1")
    combined_m2: float = _knob(0.3, "combined margin: additive angular m2, radians")
    combined_m3: float = _knob(0.2, "combined margin: additive cosine m3")
    subcenters: int = _knob(3, "subcenter_arcface: sub-centres k per class")
    triplet_margin: float = _knob(0.2, "triplet margin in cosine distance 1 - cos (range 0..2)")
    triplet_weight: float = _knob(1.0, "arcface_triplet: weight of the triplet term added to the ArcFace loss")
    sample_rate: float = _knob(1.0, "partial_fc_arcface: share of each rank's class centres used per step "
                                    "(negative-centre sampling), in (0, 1]")
