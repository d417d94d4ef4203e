"""PNG pictures for reports: pair-angle distributions (as in the ArcFace paper), training curves and a 2-D
projection of held-out embeddings. Drawn on ``matplotlib.figure.Figure`` with the Agg canvas, so no global
backend is chosen and nothing needs a display."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

logger = logging.getLogger(__name__)

DPI = 110
ANGLE_PANELS_PER_ROW = 3
# (fit summary key, panel, line style): the MAP@R series share one panel.
CURVES = (("epoch_losses", "training loss", "-"), ("epoch_head_accuracy", "head accuracy (train batches)", "-"),
          ("validation_map_at_r", "MAP@R", "-"), ("heldout_map_at_r", "MAP@R", "--"))
MAP_TITLES = {("-",): "MAP@R (validation)", ("--",): "MAP@R (held-out)",
              ("-", "--"): "MAP@R (solid: validation, dashed: held-out)"}


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=DPI)
    logger.info("picture written to %s", path)
    return path


def plot_angle_distributions(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *,
                             bins: int = 90) -> Path:
    """One panel per method (three to a row): densities of positive- and negative-pair angles in degrees (0-180), from
    ``{method: (positive_angles, negative_angles)}`` such as ``metrics.pair_angles`` returns. Returns path."""
    if not curves:
        raise ValueError("no angle distributions to plot")
    for name, (positives, negatives) in curves.items():
        if len(positives) == 0 or len(negatives) == 0:
            raise ValueError(f"{name}: need positive and negative pair angles, got {len(positives)} and "
                             f"{len(negatives)}")
    columns = min(len(curves), ANGLE_PANELS_PER_ROW)
    rows = -(-len(curves) // columns)
    figure = Figure(figsize=(4.0 * columns, 3.0 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    axes = list(grid.flat)
    for unused in axes[len(curves):]:
        unused.set_visible(False)
    edges = np.linspace(0.0, 180.0, bins + 1)
    for axis, (name, (positives, negatives)) in zip(axes, curves.items(), strict=False):
        axis.hist(np.asarray(positives), bins=edges, density=True, alpha=0.6, color="tab:blue",
                  label=f"positive pairs (mean {np.mean(positives):.1f}°)")
        axis.hist(np.asarray(negatives), bins=edges, density=True, alpha=0.6, color="tab:red",
                  label=f"negative pairs (mean {np.mean(negatives):.1f}°)")
        axis.set(title=name, xlim=(0, 180))
        axis.legend(fontsize="small")
    for axis in grid[:, 0]:
        axis.set_ylabel("density")
    figure.supxlabel("angle between the two items of a pair (degrees)")
    return _save(figure, path)


def method_colours(names: Sequence[str]) -> dict[str, Any]:
    """One colour per method, by its position in ``names`` (tab10, tab20 past ten methods), so that a method
    keeps its colour in every panel even where another method has no series."""
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(position % palette.N) for position, name in enumerate(names)}


def plot_training_curves(fits: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Per-epoch curves of each method's fit summary (``report["fit"]``): training loss, head accuracy and
    validation (solid) / held-out (dashed) MAP@R; missing or empty series are left out. A method has one
    colour in every panel and one legend entry below the panels. Returns path."""
    if not fits:
        raise ValueError("no fit summaries to plot")
    panels: dict[str, list[tuple[str, str, list[float]]]] = {}
    for key, panel, style in CURVES:
        for name, fit in fits.items():
            series = fit.get(key) or []
            if series:
                panels.setdefault(panel, []).append((name, style, [float(value) for value in series]))
    if not panels:
        raise ValueError(f"no per-epoch series in the fit summaries (looked for {[key for key, _, _ in CURVES]})")
    colours = method_colours(list(fits))
    figure = Figure(figsize=(4.2 * len(panels), 3.4 + 0.25 * -(-len(fits) // 5)), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (panel, lines) in zip(axes, panels.items(), strict=True):
        for name, style, values in lines:
            axis.plot(np.arange(1, len(values) + 1), values, style, color=colours[name], marker="o", markersize=3)
        styles = tuple(sorted({style for _, style, _ in lines}))
        axis.set(title=MAP_TITLES.get(styles, panel) if panel == "MAP@R" else panel, xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [Line2D([], [], color=colours[name], marker="o", markersize=3, label=name) for name in fits]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(fits), 5), fontsize="small")
    return _save(figure, path)


def _project(vectors: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "pca":
        centred = vectors - vectors.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        projected = centred @ components[:2].T
        return np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))  # D = 1: second axis all zero
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(vectors) - 1) / 3)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)
    raise ValueError(f"unknown projection {method!r}; use 'pca' or 'tsne'")


def plot_projection_2d(embeddings: np.ndarray, labels: Sequence | np.ndarray, path: str | Path,
                       max_classes: int = 20, *, method: str = "pca", seed: int = 0) -> Path:
    """Scatter of (N, D) embeddings projected to 2-D (PCA by SVD, or t-SNE), coloured by class; above
    ``max_classes`` classes a seeded random choice of them is drawn. Returns path."""
    vectors = np.asarray(embeddings, dtype=np.float64)
    label_array = np.asarray(labels)
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ValueError(f"embeddings must be a non-empty (N, D) array, got shape {vectors.shape}")
    if label_array.shape != (vectors.shape[0],):
        raise ValueError(f"labels must be ({vectors.shape[0]},), got shape {label_array.shape}")
    if max_classes < 1:
        raise ValueError(f"max_classes must be >= 1, got {max_classes}")
    classes = np.unique(label_array)
    if classes.size > max_classes:
        classes = np.sort(np.random.default_rng(seed).choice(classes, max_classes, replace=False))
    keep = np.isin(label_array, classes)
    if keep.sum() < 3:
        raise ValueError(f"need at least 3 samples to project, got {int(keep.sum())}")
    points = _project(vectors[keep], method, seed)
    kept_labels = label_array[keep]
    figure = Figure(figsize=(6.4, 5.2), layout="constrained")
    axis = figure.subplots()
    cmap = colormaps["tab20" if classes.size <= 20 else "turbo"].resampled(classes.size)
    for index, name in enumerate(classes):
        mine = kept_labels == name
        axis.scatter(points[mine, 0], points[mine, 1], s=14, color=cmap(index), label=str(name)[:24])
    axis.set(title=f"{method.upper()} of {int(keep.sum())} embeddings, {classes.size} classes",
             xlabel="component 1", ylabel="component 2")
    if classes.size <= 20:
        axis.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(figure, path)
