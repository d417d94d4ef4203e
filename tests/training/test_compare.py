"""Loss comparison: the mean ± std table from per-seed reports, and a real small run through the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from arcsearch.cli import main
from arcsearch.training.experiments.compare import angle_table, markdown_table, paired_differences, summarise


def _report(loss_map: float, base_map: float, seconds: float) -> dict:
    return {"methods": {"arcface_finetuned": {"map_at_r": loss_map, "precision_at_1": 1.0, "train_seconds": seconds,
                                              "verification": {"accuracy_mean": loss_map / 2, "tar_at_far_1e-3": None}},
                        "raw_pixels": {"map_at_r": base_map, "precision_at_1": float("nan")}}}


def test_summary_is_mean_and_population_std_over_seeds_ignoring_nan() -> None:
    summary = summarise([_report(0.9, 0.5, 10.0), _report(0.7, 0.3, 12.0), _report(0.8, 0.4, 11.0)])
    arc = summary["arcface_finetuned"]
    assert math.isclose(arc["map_at_r"]["mean"], 0.8) and math.isclose(arc["map_at_r"]["std"], np.std([0.9, 0.7, 0.8]))
    assert math.isclose(arc["verification_accuracy_mean"]["mean"], 0.4) and "tar_at_far_1e-3" not in arc
    assert arc["train_seconds"]["mean"] == 11.0 and arc["map_at_r"]["n"] == 3
    unscored = summary["raw_pixels"]["precision_at_1"]
    assert unscored["n"] == 0 and math.isnan(unscored["mean"])


def test_table_lists_requested_order_first_and_bolds_the_best_map() -> None:
    table = markdown_table(summarise([_report(0.9, 0.95, 10.0)]), order=["arcface_finetuned"]).splitlines()
    assert table[2].startswith("| arcface_finetuned | 0.900 ± 0.000")
    assert table[3].startswith("| raw_pixels | **0.950 ± 0.000**")
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_angle_table_averages_each_statistic_over_seeds_and_skips_methods_without_angles() -> None:
    def run(to_centre: float, negatives: float) -> dict:
        report = _report(0.9, 0.5, 10.0)
        report["methods"]["arcface_finetuned"]["angles"] = {"to_centre_deg": to_centre,
                                                            "negative_pairs_deg": negatives}
        return report

    table = angle_table(summarise([run(30.0, 80.0), run(40.0, 90.0)]), order=["arcface_finetuned"]).splitlines()
    assert "sample → own centre" in table[0] and "negative pairs" in table[0]
    assert table[2] == "| arcface_finetuned | 35.0 | – | – | – | 85.0 |"
    assert len(table) == 3  # raw_pixels has no angles: no row


def test_paired_differences_subtract_the_reference_on_the_same_seed() -> None:
    runs = [{**_report(0.9, 0.5, 10.0), "seed": 0}, {**_report(0.6, 0.7, 10.0), "seed": 1},
            {"methods": {"softmax_finetuned": {"map_at_r": 0.8}}, "seed": 0},
            {"methods": {"softmax_finetuned": {"map_at_r": 0.65}}, "seed": 1},
            {"methods": {"softmax_finetuned": {"map_at_r": 0.99}}, "seed": 2}]  # no reference on seed 2
    paired = paired_differences(runs, "arcface_finetuned")
    assert math.isclose(paired["softmax_finetuned"]["mean"], ((0.8 - 0.9) + (0.65 - 0.6)) / 2)
    assert (paired["softmax_finetuned"]["better"], paired["softmax_finetuned"]["n"]) == (1, 2)
    assert (paired["raw_pixels"]["better"], paired["raw_pixels"]["n"]) == (1, 2)
    table = markdown_table(summarise(runs), order=["arcface_finetuned"], paired=paired,
                           reference="arcface_finetuned").splitlines()
    assert "Δ MAP@R vs arcface (seeds better)" in table[0]
    assert table[2].startswith("| arcface_finetuned |") and "| – |" in table[2]
    softmax_row = next(line for line in table if line.startswith("| softmax_finetuned"))
    assert "| -0.025 (1/2) |" in softmax_row
    assert all(line.count("|") == table[0].count("|") for line in table)


COMPARE_FLAGS = ["--backbone", "small_cnn", "--losses", "arcface", "softmax", "--seeds", "0", "1", "--epochs", "1",
                 "--batch-size", "24", "--embedding-dim", "32", "--holdout-fraction", "0.34",
                 "--max-train-seconds", "20", "--device", "cpu"]


@pytest.fixture(scope="module")
def compared(faces_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The --out folder of a real small comparison: two losses, two seeds."""
    out = tmp_path_factory.mktemp("compare") / "compare"
    assert main(["compare", "--images", str(faces_subset), "--out", str(out), *COMPARE_FLAGS]) == 0
    return out


def test_table_has_closed_set_columns_and_a_dash_for_reports_without_a_closed_set() -> None:
    new = _report(0.9, 0.5, 10.0)
    new["closed_set"] = {"methods": {"arcface_finetuned": {"map_at_r": 0.6, "precision_at_1": 0.7},
                                     "raw_pixels": {"map_at_r": 0.2, "precision_at_1": 0.4}}}
    newer = _report(0.7, 0.3, 12.0)
    newer["closed_set"] = {"methods": {"arcface_finetuned": {"map_at_r": 0.8, "precision_at_1": 0.9}}}
    summary = summarise([new, newer, _report(0.8, 0.4, 11.0)])  # the last one is an old report: no closed set
    assert math.isclose(summary["arcface_finetuned"]["closed_map_at_r"]["mean"], 0.7)
    assert summary["arcface_finetuned"]["closed_map_at_r"]["n"] == 2
    assert math.isclose(summary["arcface_finetuned"]["map_at_r"]["mean"], 0.8)  # open set untouched
    table = markdown_table(summary, order=["arcface_finetuned"]).splitlines()
    header = [cell.strip() for cell in table[0].split("|")]
    arcface, pixels = ([cell.strip() for cell in line.split("|")] for line in table[2:4])
    assert arcface[header.index("closed MAP@R")] == "0.700 ± 0.100"
    assert arcface[header.index("closed P@1")] == "0.800 ± 0.100"
    assert arcface[header.index("MAP@R")] == "**0.800 ± 0.082**"
    assert pixels[header.index("closed MAP@R")] == "0.200 ± 0.000"
    old_only = markdown_table(summarise([_report(0.8, 0.4, 11.0)])).splitlines()[2].split("|")
    assert [cell.strip() for cell in old_only][header.index("closed MAP@R")] == "–"


def test_compare_loads_old_reports_without_closed_set_results(compared: Path, faces_subset: Path,
                                                              tmp_path: Path) -> None:
    """Runs written before closed-set evaluation existed (no ``closed_set``, no ``closed_set_fraction`` in the
    config) are reused as runs with a closed-set fraction of 0, and show "–" in the closed columns."""
    old = tmp_path / "old"
    shutil.copytree(compared / "runs", old / "runs")
    for path in (old / "runs").glob("*_report.json"):
        report = json.loads(path.read_text())
        del report["closed_set"], report["config"]["closed_set_fraction"]
        path.write_text(json.dumps(report))
    out = tmp_path / "again"
    assert main(["compare", "--images", str(faces_subset), "--out", str(out), *COMPARE_FLAGS,
                 "--closed-set-fraction", "0", "--reuse", str(old)]) == 0
    assert not list(out.glob("runs/*_report.json"))  # every run reused, none trained
    result = json.loads((out / "compare.json").read_text())
    header = [cell.strip() for cell in result["table"].splitlines()[0].split("|")]
    for line in result["table"].splitlines()[2:]:
        cells = [cell.strip() for cell in line.split("|")]
        assert cells[header.index("closed MAP@R")] == cells[header.index("closed P@1")] == "–"
        assert cells[header.index("MAP@R")] not in ("–", "")


def test_compare_command_trains_each_loss_and_seed_and_writes_the_table(compared: Path) -> None:
    out = compared
    result = json.loads((out / "compare.json").read_text())
    assert [(run["loss"], run["seed"]) for run in result["runs"]] == [
        ("arcface", 0), ("softmax", 0), ("arcface", 1), ("softmax", 1)]
    heldout = {run["seed"]: tuple(run["heldout_classes"]) for run in result["runs"]}
    assert heldout[0] != heldout[1], "seeds must change the class split"
    for loss in ("arcface", "softmax"):
        scores = [run["methods"][f"{loss}_finetuned"]["map_at_r"] for run in result["runs"] if run["loss"] == loss]
        assert math.isclose(result["summary"][f"{loss}_finetuned"]["map_at_r"]["mean"], float(np.mean(scores)))
    # baselines are scored once per seed, by the first loss's run only
    assert ["raw_pixels" in run["methods"] for run in result["runs"]] == [True, False, True, False]
    assert (out / "compare.md").read_text().startswith("| method |")
    assert "Δ MAP@R vs arcface" in result["table"]
    # each run scores its closed set; baselines only in the first loss's run, as on the open set
    assert [set(run["closed_set"]["methods"]) for run in result["runs"] if run["loss"] == "arcface"] == [
        {"raw_pixels", "untrained_backbone", "arcface_finetuned"}] * 2
    closed = result["summary"]["softmax_finetuned"]["closed_map_at_r"]
    assert closed["n"] == 2 and 0.0 < closed["mean"] <= 1.0
    assert "closed MAP@R" in result["table"] and "closed set" in (out / "compare.md").read_text()
    assert result["angle_table"].splitlines()[2].startswith("| arcface_finetuned | ")
    assert result["angle_table"] in (out / "compare.md").read_text()
    for picture in ("angles.png", "training_curves.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert result["figures"][picture.removesuffix(".png")] == str(out / picture)
