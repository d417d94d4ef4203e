"""Per-loss tuning on validation classes: overrides, the choice of the best point, and a real run through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from arcsearch.cli import main
from arcsearch.training.config import TrainConfig
from arcsearch.training.experiments.tuning import (
    DEFAULT_GRIDS,
    apply_overrides,
    best_overrides,
    point_name,
    tuning_table,
)


def test_overrides_go_to_loss_params_or_the_config_and_lr_factor_scales_the_encoder_rate() -> None:
    base = TrainConfig(lr=1e-4, head_lr=3e-2)
    tuned = apply_overrides(base, {"margin_rad": 0.3, "head_lr": 1e-2, "lr_factor": 3.0})
    assert tuned.objective_params.margin_rad == 0.3 and tuned.objective_params.scale == base.objective_params.scale
    assert tuned.head_lr == 1e-2 and math.isclose(tuned.lr, 3e-4)
    assert base.objective_params.margin_rad == 0.5 and base.lr == 1e-4  # the base is left alone
    with pytest.raises(ValueError, match="margin_deg"):
        apply_overrides(base, {"margin_deg": 30})


def test_every_grid_starts_with_the_default_and_names_only_real_knobs() -> None:
    for loss, grid in DEFAULT_GRIDS.items():
        assert grid[0] == {}, loss
        for point in grid:
            apply_overrides(TrainConfig(), point)  # raises on an unknown knob
    assert point_name({}) == "default" and point_name({"scale": 16.0, "margin_rad": 0.3}) == "margin_rad=0.3,scale=16"


def test_best_point_is_the_highest_mean_the_default_wins_ties_and_nan_never_wins() -> None:
    points = [{"loss": "arcface", "point": {}, "name": "default", "scores": [0.8], "mean": 0.8},
              {"loss": "arcface", "point": {"scale": 16.0}, "name": "scale=16", "scores": [0.8], "mean": 0.8},
              {"loss": "cosface", "point": {}, "name": "default", "scores": [math.nan], "mean": math.nan},
              {"loss": "cosface", "point": {"cosface_margin": 0.2}, "name": "m", "scores": [0.7], "mean": 0.7},
              {"loss": "triplet", "point": {}, "name": "default", "scores": [0.5], "mean": 0.5},
              {"loss": "triplet", "point": {"triplet_margin": 0.1}, "name": "t", "scores": [math.nan],
               "mean": math.nan}]
    best = best_overrides(points)
    assert best == {"arcface": {}, "cosface": {"cosface_margin": 0.2}, "triplet": {}}
    table = tuning_table(points, best).splitlines()
    assert table[2] == "| arcface | default | 0.800 | **0.800** |" and table[3].endswith("| 0.800 |")


def test_tune_then_compare_with_the_tuned_overrides(faces_subset: Path, tmp_path: Path) -> None:
    """Through the CLI on 12 real people: the validation scores pick a point per loss, and compare
    trains each loss with its own point (recorded in the run's config)."""
    common = ["--images", str(faces_subset), "--backbone", "small_cnn", "--epochs", "1", "--batch-size", "16",
              "--embedding-dim", "32", "--holdout-fraction", "0.25", "--device", "cpu"]
    assert main(["tune", *common, "--losses", "arcface", "--out", str(tmp_path / "tune"),
                 "--validation-fraction", "0.34"]) == 0
    tuning = json.loads((tmp_path / "tune" / "tuning.json").read_text())
    assert [(p["loss"], p["name"]) for p in tuning["points"]][:2] == [("arcface", "default"),
                                                                      ("arcface", "margin_rad=0.3")]
    assert len(tuning["points"]) == len(DEFAULT_GRIDS["arcface"])
    assert all(0.0 <= p["mean"] <= 1.0 for p in tuning["points"])
    assert tuning["best"]["arcface"] == max(tuning["points"], key=lambda p: p["mean"])["point"]
    assert json.loads((tmp_path / "tune" / "tuned.json").read_text()) == tuning["best"]
    # the same search again takes every run from the folder instead of training it again
    written = {path: path.stat().st_mtime_ns for path in (tmp_path / "tune" / "runs").glob("*_report.json")}
    assert len(written) == len(DEFAULT_GRIDS["arcface"])
    assert main(["tune", *common, "--losses", "arcface", "--out", str(tmp_path / "tune"),
                 "--validation-fraction", "0.34"]) == 0
    assert {path: path.stat().st_mtime_ns for path in written} == written
    assert json.loads((tmp_path / "tune" / "tuning.json").read_text())["points"] == tuning["points"]
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"arcface": {"margin_rad": 0.3}, "softmax": {"head_lr": 3e-3}}))
    assert main(["compare", *common, "--losses", "arcface", "softmax", "--out", str(tmp_path / "compare"),
                 "--seeds", "0", "--overrides", str(tuned)]) == 0
    runs = {run["loss"]: run for run in json.loads((tmp_path / "compare" / "compare.json").read_text())["runs"]}
    assert runs["arcface"]["config"]["loss_params"]["margin_rad"] == 0.3
    assert runs["softmax"]["config"]["head_lr"] == 3e-3
    assert runs["softmax"]["config"]["loss_params"]["margin_rad"] == 0.5  # arcface's override stays arcface's
    # a second comparison that changes softmax only takes arcface's run as it is
    tuned.write_text(json.dumps({"arcface": {"margin_rad": 0.3}, "softmax": {"head_lr": 1e-2}}))
    assert main(["compare", *common, "--losses", "arcface", "softmax", "--out", str(tmp_path / "again"),
                 "--seeds", "0", "--overrides", str(tuned), "--reuse", str(tmp_path / "compare")]) == 0
    again = {run["loss"]: run for run in json.loads((tmp_path / "again" / "compare.json").read_text())["runs"]}
    assert again["arcface"]["methods"] == runs["arcface"]["methods"]
    assert not (tmp_path / "again" / "runs" / "arcface_seed0_report.json").exists()
    assert (tmp_path / "again" / "runs" / "softmax_seed0_report.json").exists()
    assert again["softmax"]["config"]["head_lr"] == 1e-2


def test_overrides_for_a_loss_not_compared_are_refused(faces_subset: Path, tmp_path: Path) -> None:
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"cosface": {"cosface_margin": 0.2}}))
    status = main(["compare", "--images", str(faces_subset), "--backbone", "small_cnn", "--out", str(tmp_path / "c"),
                   "--losses", "arcface", "--seeds", "0", "--epochs", "1", "--overrides", str(tuned)])
    assert status == 2 and not (tmp_path / "c" / "compare.json").exists()
