"""The pictures are real PNG files with coloured data drawn on them; empty input is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arcsearch.training.evaluation.metrics import pair_angles
from arcsearch.training.evaluation.plots import (
    method_colours,
    plot_angle_distributions,
    plot_projection_2d,
    plot_training_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def coloured_pixels(path: Path) -> int:
    """Checks the file is a non-blank PNG; returns how many pixels are clearly coloured (not grey/black/white),
    i.e. drawn data: axes, ticks and text are all grey-scale."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert pixels.var() > 0
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def clusters(num_classes: int, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    vectors = rng.normal(size=(num_classes, 16))[labels] + 0.3 * rng.normal(size=(labels.size, 16))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), labels


def test_angle_distributions(tmp_path: Path) -> None:
    embeddings, labels = clusters(6, 8)
    curves = {"arcface": pair_angles(embeddings, labels), "softmax": pair_angles(embeddings[::-1], labels)}
    path = plot_angle_distributions(curves, tmp_path / "pictures" / "angles.png")
    assert path == tmp_path / "pictures" / "angles.png"
    assert coloured_pixels(path) > 500
    with Image.open(path) as one, Image.open(plot_angle_distributions(dict(list(curves.items())[:1]),
                                                                      tmp_path / "one.png")) as single:
        assert one.width > single.width  # one panel per method
    four = {f"loss{i}": curves["arcface"] for i in range(4)}
    with Image.open(plot_angle_distributions(four, tmp_path / "four.png")) as wrapped, Image.open(path) as two:
        assert wrapped.height > 1.5 * two.height  # a fourth method starts a second row
    with pytest.raises(ValueError, match="no angle"):
        plot_angle_distributions({}, tmp_path / "empty.png")
    with pytest.raises(ValueError, match="arcface: need positive and negative"):
        plot_angle_distributions({"arcface": (np.array([]), np.array([30.0]))}, tmp_path / "empty.png")


def test_training_curves_with_missing_series(tmp_path: Path) -> None:
    fits = {"arcface": {"epoch_losses": [9.0, 6.5, 5.0, 4.2], "epoch_head_accuracy": [0.1, 0.4, 0.6, 0.7],
                        "validation_map_at_r": [0.5, 0.6, 0.62, 0.63], "stop_reason": "epochs done"},
            "triplet": {"epoch_losses": [0.3, 0.2, 0.15], "epoch_head_accuracy": [],
                        "validation_map_at_r": None}}
    path = plot_training_curves(fits, tmp_path / "curves.png")
    assert coloured_pixels(path) > 200
    only_loss = plot_training_curves({"triplet": fits["triplet"]}, tmp_path / "loss.png")
    with Image.open(path) as full, Image.open(only_loss) as single:
        assert full.width > single.width  # three panels against one
    with pytest.raises(ValueError, match="no fit"):
        plot_training_curves({}, tmp_path / "empty.png")
    with pytest.raises(ValueError, match="no per-epoch series"):
        plot_training_curves({"x": {"epoch_losses": []}}, tmp_path / "empty.png")


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection(tmp_path: Path, method: str) -> None:
    embeddings, labels = clusters(25, 4)
    path = plot_projection_2d(embeddings, labels, tmp_path / f"{method}.png", max_classes=20, method=method)
    assert coloured_pixels(path) > 300


def test_projection_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        plot_projection_2d(np.zeros((0, 4)), [], tmp_path / "p.png")
    with pytest.raises(ValueError, match="labels must be"):
        plot_projection_2d(np.ones((3, 4)), ["a"], tmp_path / "p.png")
    with pytest.raises(ValueError, match="unknown projection"):
        plot_projection_2d(np.eye(4), list("abcd"), tmp_path / "p.png", method="umap")
    assert not (tmp_path / "p.png").exists()


def test_a_method_keeps_its_colour_where_another_has_no_series(tmp_path: Path) -> None:
    """triplet has no head accuracy: arcface_triplet must still be drawn in its own colour (tab:orange) in that
    panel, not take triplet's (tab:blue), as a colour cycle per panel would."""
    fits = {"triplet": {"epoch_losses": [0.3, 0.2, 0.1], "epoch_head_accuracy": []},
            "arcface_triplet": {"epoch_losses": [4.0, 2.0, 1.0], "epoch_head_accuracy": [0.2, 0.5, 0.9]}}
    colours = method_colours(list(fits))
    assert colours["triplet"] != colours["arcface_triplet"]
    path = plot_training_curves(fits, tmp_path / "curves.png")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    accuracy_panel = pixels[: int(pixels.shape[0] * 0.75), pixels.shape[1] // 2:]  # right panel, above the legend

    def count(colour: tuple[float, ...]) -> int:
        rgb = np.array([round(255 * c) for c in colour[:3]], dtype=np.int16)
        return int((np.abs(accuracy_panel - rgb).max(axis=2) < 12).sum())

    assert count(colours["arcface_triplet"]) > 50
    assert count(colours["triplet"]) == 0
