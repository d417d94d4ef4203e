"""Remedies for few training classes and augmentation policies: candidates chosen on validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn

from arcsearch.training.config import ImageTrainConfig, TextTrainConfig
from arcsearch.training.data.augment import AUTO_POLICIES, augmentation_for
from arcsearch.training.engine.results import FitResult
from arcsearch.training.remedies import REMEDIES, check_remedies, l2_sp, lower_blocks
from arcsearch.training.run import train_images
from arcsearch.training.selection import fit_selected, remedy_names

# what a (scripted) run scores on validation, by what the candidate changed
SCRIPTED = {"plain": 0.55, "adapter": 0.50, "freeze_lower": 0.60, "low_lr": 0.70, "l2sp": 0.65}


class TwoBlocks(nn.Module):
    """An image-encoder-shaped toy: ``features`` of two blocks and a ``projection``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
        self.projection = nn.Linear(3, 2)


def scripted_fit(encoder: TwoBlocks, base: TextTrainConfig, seen: list[str]) -> Any:
    """A fit that tells the candidates apart by what they did to the encoder and config, moves the weights
    by the score and returns the scripted validation scores (the start scores 0.5)."""
    def fit_one(config: TextTrainConfig) -> tuple[nn.Module, FitResult]:
        hooks = bool(encoder.projection.weight._backward_hooks)
        frozen = [not p.requires_grad for p in encoder.parameters()]
        name = ("l2sp" if hooks else "adapter" if all(frozen[:4]) else "freeze_lower" if any(frozen)
                else "low_lr" if config.lr < base.lr else "plain")
        seen.append(name)
        with torch.no_grad():
            encoder.projection.bias.fill_(SCRIPTED[name])
        return nn.Linear(1, 1), FitResult(validation_scores=[SCRIPTED[name]], start_validation_score=0.5,
                                          best_epoch=0)
    return fit_one


@pytest.fixture()
def config(tmp_path: Path) -> TextTrainConfig:
    return TextTrainConfig(texts_file=tmp_path / "t.jsonl", out_dir=tmp_path / "o", device="cpu", epochs=1)


def test_the_chooser_keeps_the_best_remedy_on_validation(config: TextTrainConfig) -> None:
    encoder, seen = TwoBlocks(), []
    choice, info = fit_selected(encoder, scripted_fit(encoder, config, seen), config, num_train_classes=5,
                                validated=True)
    assert seen == ["plain", *REMEDIES]  # plain fine-tuning first, then the remedies cheapest first
    assert choice.name == "low_lr" and info["remedies"]["chosen"] == "low_lr"
    assert encoder.projection.bias.tolist() == pytest.approx([0.70, 0.70])  # the winner's weights, not the last run's
    assert [t["validation_map_at_r"] for t in info["remedies"]["trials"]] == [SCRIPTED[n] for n in seen]
    assert all(p.requires_grad for p in encoder.parameters())  # every remedy undone
    assert not encoder.projection.weight._backward_hooks


def test_remedies_apply_under_the_threshold_or_when_named(config: TextTrainConfig) -> None:
    assert remedy_names(config, num_train_classes=5, validated=True)[0] == REMEDIES
    names, why = remedy_names(config, num_train_classes=config.remedy_below_classes, validated=True)
    assert names == () and "plain fine-tuning only" in why
    assert remedy_names(config, num_train_classes=5, validated=False)[0] == ()
    named = dataclasses.replace(config, remedies="low_lr,l2sp")
    assert remedy_names(named, num_train_classes=500, validated=True)[0] == ("low_lr", "l2sp")
    assert check_remedies("none") == ()
    with pytest.raises(ValueError, match="remedies must be"):
        dataclasses.replace(config, remedies="dropout")


def test_l2sp_pulls_the_gradient_toward_the_start() -> None:
    layer = nn.Linear(2, 2)
    undo = l2_sp(layer, alpha=0.5)
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    (0.0 * layer(torch.ones(1, 2)).sum()).backward()
    assert torch.allclose(layer.weight.grad, torch.full((2, 2), 0.5))
    assert torch.allclose(layer.weight.detach() - start, torch.ones(2, 2))
    undo()
    layer.weight.grad = None
    (0.0 * layer(torch.ones(1, 2)).sum()).backward()
    assert torch.equal(layer.weight.grad, torch.zeros(2, 2))


def test_lower_blocks_of_a_transformer_are_its_embeddings_and_lower_layers(tiny_text_model: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_text_model), device="cpu")
    bert = model[0].auto_model
    assert lower_blocks(model) == [bert.embeddings]  # one layer: its lower half is empty
    toy = TwoBlocks()
    assert lower_blocks(toy) == [toy.features[0]]


def count_flips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts left-right flips done in this process (the loader decodes in it with ``workers=0``)."""
    flips = [0]
    transpose = Image.Image.transpose

    def counted(self: Image.Image, method: Any) -> Image.Image:
        flips[0] += method == Image.Transpose.FLIP_LEFT_RIGHT
        return transpose(self, method)

    monkeypatch.setattr(Image.Image, "transpose", counted)
    return flips


def image_config(faces: Path, tmp_path: Path, **overrides: Any) -> ImageTrainConfig:
    settings: dict[str, Any] = dict(backbone="small_cnn", image_size=32, embedding_dim=16, epochs=1, batch_size=20,
                                    lr=3e-3, holdout_fraction=0.25, device="cpu", show_progress=False, workers=0,
                                    remedies="none")
    return ImageTrainConfig(images_dir=faces, out_dir=tmp_path / "o", **{**settings, **overrides})


@pytest.mark.parametrize(("policy", "flip", "flipped"), [("none", True, False), ("strong", False, False),
                                                         ("default", True, True)])
def test_augment_none_and_no_flip_never_flip(faces_subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             policy: str, flip: bool, flipped: bool) -> None:
    flips = count_flips(monkeypatch)
    train_images(image_config(faces_subset, tmp_path, augment=policy, flip=flip), export=False, baselines=False)
    assert (flips[0] > 0) is flipped, flips
    assert augmentation_for("none") is None and augmentation_for("light", flip=False).flip_probability == 0


def test_augment_auto_keeps_the_best_policy_on_validation(faces_subset: Path, tmp_path: Path) -> None:
    report = train_images(image_config(faces_subset, tmp_path, augment="auto"), export=False, baselines=False)
    augment = report["selection"]["augment"]
    scores = [trial["validation_map_at_r"] for trial in augment["trials"]]
    assert [trial["name"] for trial in augment["trials"]] == [f"augment={p}" for p in AUTO_POLICIES]
    assert augment["chosen"] == AUTO_POLICIES[scores.index(max(scores))]
    assert report["selection"]["candidate"] == f"augment={augment['chosen']}"
