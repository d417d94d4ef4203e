"""The PNG pictures of a training run and of a comparison of objectives, written beside their reports."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arcsearch.training.evaluation.metrics import pair_angles
from arcsearch.training.evaluation.plots import plot_angle_distributions, plot_projection_2d, plot_training_curves

logger = logging.getLogger(__name__)


def figure_path(out_dir: Path, name: str) -> Path:
    """``<out_dir>_<name>.png``: beside the run's ``<out_dir>_report.json``."""
    return Path(out_dir).parent / f"{Path(out_dir).name}_{name}.png"


def write_run_figures(out_dir: Path, *, objective: str, fit: dict[str, Any], heldout: dict[str, np.ndarray],
                      labels: Sequence[str]) -> dict[str, str]:
    """Angle distributions of positive vs negative held-out pairs for each method in ``heldout`` (method ->
    (N, D) L2-normalised embeddings), the training curves, and a 2-D projection of the last method's
    embeddings coloured by class. Returns picture name -> path."""
    written = {"training_curves": plot_training_curves({objective: fit}, figure_path(out_dir, "training_curves"))}
    if heldout:
        written["angles"] = plot_angle_distributions(
            {method: pair_angles(vectors, labels) for method, vectors in heldout.items()},
            figure_path(out_dir, "angles"))
        written["projection"] = plot_projection_2d(list(heldout.values())[-1], labels,
                                                   figure_path(out_dir, "heldout_projection"))
    logger.info("pictures: %s", ", ".join(str(p) for p in written.values()))
    return {name: str(path) for name, path in written.items()}


def write_compare_figures(runs: Sequence[dict[str, Any]], out_dir: Path) -> dict[str, str]:
    """For the first seed of a comparison: held-out pair angles per objective (one panel each, as in the
    ArcFace paper) and every objective's training curves in one picture. Returns picture name -> path."""
    first_seed = runs[0]["seed"]
    chosen = [run for run in runs if run["seed"] == first_seed]
    curves, fits = {}, {}
    for run in chosen:
        fits[run["loss"]] = run["fit"]
        if run.get("heldout_embeddings"):
            stored = np.load(run["heldout_embeddings"])
            curves[run["loss"]] = pair_angles(stored["embeddings"], stored["labels"])
    written = {"training_curves": plot_training_curves(fits, Path(out_dir) / "training_curves.png")}
    if curves:
        written["angles"] = plot_angle_distributions(curves, Path(out_dir) / "angles.png")
    return {name: str(path) for name, path in written.items()}
