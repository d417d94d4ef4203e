"""Model selection: the start is a candidate, a run that cannot beat it exports it (and says so), or refuses;
validation classes with a floor, items when the classes are too few."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from arcsearch.cli import main
from arcsearch.index.bundle import read_embedder_manifest, sha256_of_path
from arcsearch.index.loaders import TEXT_WEIGHTS_DIR
from arcsearch.training.data.validation import MIN_TRAIN_CLASSES, plan_split
from arcsearch.training.run import report_path

# 5 items of each of 40 classes, 8 items of the 8 classes "k00".."k07"
MANY = [f"c{i:02d}" for i in range(40) for _ in range(5)]
FEW = [f"k{i:02d}" for i in range(8) for _ in range(8)]


def test_validation_classes_take_a_share_with_a_floor() -> None:
    split = plan_split(MANY, holdout_fraction=0.25, validation_fraction=0.15, min_validation_classes=3, seed=0)
    assert split.mode == "classes" and len(split.classes.validation) == 4  # 15 % of 30, rounded
    assert len(split.classes.train) == 26 and len(split.classes.holdout) == 10
    twelve = plan_split(MANY[:60], holdout_fraction=0.25, validation_fraction=0.15, min_validation_classes=3, seed=0)
    assert len(twelve.classes.validation) == 3 and len(twelve.classes.train) == 6  # the floor, not round(1.35)
    labels = np.asarray(MANY)
    assert set(labels[split.validation]) == set(split.classes.validation)
    assert not set(labels[split.train]) & set(labels[split.validation])
    # the held-out classes do not depend on the validation
    assert plan_split(MANY, holdout_fraction=0.25, validation_fraction=0.0, min_validation_classes=3,
                      seed=0).classes.holdout == split.classes.holdout


def test_too_few_classes_fall_back_to_validation_items_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    split = plan_split(FEW, holdout_fraction=0.25, validation_fraction=0.15, min_validation_classes=3, seed=0)
    assert len(split.classes.train) == 6 < 3 + MIN_TRAIN_CLASSES
    assert split.mode == "items" and split.classes.validation == ()
    assert "too few" in split.note and "too few" in caplog.text
    labels = np.asarray(FEW)
    assert not set(split.train.tolist()) & set(split.validation.tolist())
    counts = {label: int((labels[split.validation] == label).sum()) for label in split.classes.train}
    assert set(counts.values()) == {2}  # at least 2 of each class's 8 items (15 % rounds to 1)
    assert set(labels[split.train]) == set(split.classes.train)  # every class still trains
    off = plan_split(FEW, holdout_fraction=0.25, validation_fraction=0.0, min_validation_classes=3, seed=0)
    assert off.mode == "none" and off.validation.size == 0


@pytest.fixture(scope="module")
def small_glosses(glosses_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 of the 40 classes (about 150 texts): 4 held out, 3 validation, 9 training classes."""
    rows = [json.loads(line) for line in glosses_subset.read_text(encoding="utf-8").splitlines()]
    keep = sorted({row["label"] for row in rows})[:16]
    path = tmp_path_factory.mktemp("small_glosses") / "glosses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["label"] in keep), encoding="utf-8")
    return path


def harmful_run(texts: Path, model: Path, out: Path, *extra: str) -> int:
    """A learning rate a thousand times too high: one epoch ruins the encoder."""
    return main(["train", "--texts", str(texts), "--model", str(model), "--out", str(out), "--epochs", "1",
                 "--lr", "0.05", "--batch-size", "16", "--holdout-fraction", "0.25", "--remedies", "none",
                 "--device", "cpu", *extra])


def weights_file(bundle: Path) -> Path:
    return bundle / TEXT_WEIGHTS_DIR / "model.safetensors"


def test_harmful_fine_tuning_exports_the_start_and_says_so(small_glosses: Path, tiny_text_model: Path,
                                                          tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bundle = tmp_path / "bundle"
    assert harmful_run(small_glosses, tiny_text_model, bundle) == 0
    selection = json.loads(report_path(bundle).read_text())["selection"]
    assert selection["validation"]["mode"] == "classes" and selection["validation"]["classes"] == 3
    assert selection["chosen_epoch"] == 0 and selection["gained"] is False and selection["exported"] is True
    assert selection["gain_over_start"] < 0
    assert [e["epoch"] for e in selection["epochs"]] == [0, 1]
    assert "did not beat the pretrained model" in selection["verdict"]
    assert read_embedder_manifest(bundle).training["selection"]["chosen_epoch"] == 0
    # the exported weights are the start's, byte for byte
    assert sha256_of_path(weights_file(bundle)) == sha256_of_path(tiny_text_model / "model.safetensors")
    start = load_file(tiny_text_model / "model.safetensors")
    assert all(np.array_equal(t.numpy(), start[k].numpy()) for k, t in load_file(weights_file(bundle)).items())
    last_lines = [r.getMessage() for r in caplog.records if r.name.startswith("arcsearch")][-2:]
    assert "did not beat the pretrained model" in last_lines[0] and "-0." in last_lines[0]
    assert "bundle written" in last_lines[1]


def test_require_gain_refuses_and_exports_nothing(small_glosses: Path, tiny_text_model: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    bundle = tmp_path / "bundle"
    assert harmful_run(small_glosses, tiny_text_model, bundle, "--require-gain") == 2
    assert not bundle.exists() and not bundle.with_name("bundle.partial").exists()
    assert "--require-gain" in caplog.text and "nothing exported" in caplog.text
    selection = json.loads(report_path(bundle).read_text())["selection"]  # the report says why
    assert selection["exported"] is False and selection["gained"] is False
