"""The command line wires the stages together: train -> evaluate -> index, each through files."""

from __future__ import annotations

import json
import shutil

import pytest

from arcsearch.cli import main
from arcsearch.index.bundle import read_embedder_manifest, read_index_manifest
from arcsearch.index.collections import current_index_dir
from arcsearch.training.run import report_path


def test_train_evaluate_index_through_the_cli(prepared, tmp_path, capsys):
    faces = tmp_path / "faces"
    for person in sorted(p for p in prepared.faces_dir.iterdir() if p.is_dir())[:8]:
        shutil.copytree(person, faces / person.name)
    bundle = tmp_path / "embedder"
    status = main(["train", "--images", str(faces), "--out", str(bundle), "--backbone", "small_cnn",
                   "--epochs", "2", "--embedding-dim", "32", "--holdout-fraction", "0.25", "--device", "cpu",
                   "--validation-fraction", "0.34", "--min-validation-classes", "2", "--margin-warmup-fraction", "0.5"])
    assert status == 0
    report = json.loads(report_path(bundle).read_text())
    assert report["config"]["margin_warmup_fraction"] == 0.5
    assert len(report["validation_classes"]) == 2 and len(report["fit"]["validation_map_at_r"]) == 2
    scores = [report["selection"]["start_validation_map_at_r"], *report["fit"]["validation_map_at_r"]]
    assert report["fit"]["best_epoch"] == scores.index(max(scores))  # 1-based, as logged; 0: the start
    manifest = read_embedder_manifest(bundle)
    assert manifest.modality == "image" and manifest.embedding_dim == 32
    assert len(manifest.training["heldout_classes"]) == 2

    capsys.readouterr()
    assert main(["evaluate", "--embedder", str(bundle), "--images", str(faces)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["num_classes"] == 2 and evaluated["num_items"] == 20  # the held-out people only
    trained = json.loads(report_path(bundle).read_text())["methods"]["arcface_finetuned"]
    assert evaluated["map_at_r"] == pytest.approx(trained["map_at_r"], abs=1e-4)

    collections = tmp_path / "collections"
    assert main(["index", "--collection", "faces", "--embedder", str(bundle), "--source", str(faces),
                 "--collections-dir", str(collections), "--device", "cpu"]) == 0
    index_manifest = read_index_manifest(current_index_dir(collections, "faces"))
    assert index_manifest.num_items == 80
    assert index_manifest.embedder_sha256 == manifest.weights_sha256


def test_user_mistakes_exit_with_status_2_and_a_message(tmp_path, caplog):
    status = main(["train", "--texts", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert status == 2
    assert "--model" in caplog.text
    status = main(["index", "--collection", "x", "--embedder", str(tmp_path), "--source", str(tmp_path),
                   "--collections-dir", str(tmp_path / "c")])
    assert status == 2
    assert "manifest.json is missing" in caplog.text


@pytest.mark.parametrize("command", ["compare", "tune"])
def test_compare_and_tune_refuse_to_run_once_per_torchrun_rank(command, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    status = main([command, "--images", str(tmp_path), "--backbone", "small_cnn", "--out", str(tmp_path / "o")])
    assert status == 2
    assert f"`arcsearch {command}` runs in one process" in caplog.text
    assert not (tmp_path / "o").exists()



def test_every_training_flag_reaches_the_config(tmp_path):
    """Each flag of train/compare/tune sets the config field its destination names (``--loss``: objective)."""
    from arcsearch.cli import build_parser
    from arcsearch.commands import training_config

    args = build_parser().parse_args([
        "compare", "--images", str(tmp_path), "--out", str(tmp_path / "o"), "--backbone", "small_cnn",
        "--epochs", "7", "--batch-size", "12", "--lr", "0.002", "--head-lr", "0.2", "--weight-decay", "0.001",
        "--head-weight-decay", "0.01", "--lr-schedule", "poly", "--margin-warmup-fraction", "0.4", "--loss", "cosface",
        "--cosface-margin", "0.3", "--easy-margin", "--embedding-dim", "24", "--holdout-fraction", "0.3",
        "--max-train-seconds", "50", "--seed", "3", "--device", "cpu", "--sampler", "pk", "--samples-per-class", "3",
        "--validation-fraction", "0.2", "--patience", "2", "--precision", "bf16", "--checkpoint-every", "5",
        "--checkpoint-dir", str(tmp_path / "ck"), "--resume", "--losses", "arcface", "--seeds", "4",
        "--min-validation-classes", "4", "--require-gain", "--remedies", "low_lr,l2sp", "--remedy-below-classes", "9",
        "--augment", "light", "--no-flip"])
    config, _ = training_config(args)
    given = {"epochs": 7, "batch_size": 12, "lr": 0.002, "head_lr": 0.2, "weight_decay": 0.001,
             "head_weight_decay": 0.01, "lr_schedule": "poly", "margin_warmup_fraction": 0.4, "objective": "cosface",
             "embedding_dim": 24, "holdout_fraction": 0.3, "max_train_seconds": 50.0, "seed": 3, "device": "cpu",
             "sampler": "pk", "samples_per_class": 3, "validation_fraction": 0.2, "patience": 2, "precision": "bf16",
             "checkpoint_every": 5, "checkpoint_dir": tmp_path / "ck", "resume": True, "backbone": "small_cnn",
             "images_dir": tmp_path, "out_dir": tmp_path / "o", "min_validation_classes": 4, "require_gain": True,
             "remedies": "low_lr,l2sp", "remedy_below_classes": 9, "augment": "light", "flip": False}
    assert {name: getattr(config, name) for name in given} == given
    assert (config.objective_params.cosface_margin, config.objective_params.easy_margin) == (0.3, True)
    assert config.objective_params.scale == 30.0  # a knob left out keeps its default
    assert config.to_dict()["loss"] == "cosface" and config.to_dict()["loss_params"]["cosface_margin"] == 0.3
