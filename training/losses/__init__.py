"""Training objectives behind one interface (``Objective``), chosen by name (``build_objective``)."""

from training.loss_params import LossParams
from training.losses.base import Objective, ObjectiveOutput
from training.losses.registry import LOSSES, build_objective

__all__ = ["LOSSES", "LossParams", "Objective", "ObjectiveOutput", "build_objective"]
