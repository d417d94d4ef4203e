"""Class splits, batches, augmentation and the learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.training.data.images import Augmentation, augment, image_batch, random_crop_box
from arcsearch.training.data.splits import SplitError, indices_of, label_codes, shuffled_batches, split_classes
from arcsearch.training.engine.optimiser import get_lr, make_optimiser

LABELS = [f"class{c:02d}" for c in range(40) for _ in range(3)]


def test_split_is_disjoint_complete_and_sized() -> None:
    split = split_classes(LABELS, holdout_fraction=0.25, validation_fraction=0.2, seed=0)
    train, val, held = set(split.train), set(split.validation), set(split.holdout)
    assert not train & val and not train & held and not val & held
    assert train | val | held == set(LABELS)
    assert len(held) == 10 and len(val) == 6 and len(train) == 24


def test_split_is_deterministic_and_seeded() -> None:
    first = split_classes(LABELS, holdout_fraction=0.25, seed=7)
    assert split_classes(list(reversed(LABELS)), holdout_fraction=0.25, seed=7) == first
    assert split_classes(LABELS, holdout_fraction=0.25, seed=8).holdout != first.holdout
    assert first.validation == ()


def test_split_refuses_impossible_fractions() -> None:
    with pytest.raises(SplitError, match="too few"):
        split_classes(["a", "b", "c"], holdout_fraction=0.5)
    with pytest.raises(SplitError, match="fraction"):
        split_classes(LABELS, holdout_fraction=1.0)
    assert split_classes(LABELS, holdout_fraction=0.0).holdout == ()


def test_indices_and_codes() -> None:
    labels = ["b", "a", "c", "a"]
    assert indices_of(labels, ["a", "c"]).tolist() == [1, 2, 3]
    assert label_codes(["a", "b", "a"], ["a", "b"]).tolist() == [0, 1, 0]
    with pytest.raises(KeyError, match="'z'"):
        label_codes(["z"], ["a", "b"])


def test_batches_cover_every_item_once_and_drop_singletons() -> None:
    batches = shuffled_batches(65, batch_size=16, rng=np.random.default_rng(0))
    assert [len(b) for b in batches] == [16, 16, 16, 16]
    assert len(set(np.concatenate(batches).tolist())) == 64
    assert [len(b) for b in shuffled_batches(10, batch_size=4, rng=np.random.default_rng(0))] == [4, 4, 2]


def test_augmentation_stays_inside_the_image_and_changes_pixels() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        left, top, right, bottom = random_crop_box(92, 112, Augmentation(), rng)
        assert 0 <= left < right <= 92 and 0 <= top < bottom <= 112
    gradient = Image.fromarray(np.tile(np.arange(92, dtype=np.uint8), (112, 1))).convert("RGB")
    params = ImagePreprocessing(height=64, width=64)
    plain = image_batch([gradient], params)
    views = image_batch([augment(gradient, Augmentation(), rng) for _ in range(4)], params)
    assert plain.shape == (1, 3, 64, 64)
    assert views.shape == (4, 3, 64, 64)
    assert not np.allclose(views.numpy(), np.repeat(plain.numpy(), 4, axis=0))


def test_get_lr_warms_up_then_decays_to_the_floor() -> None:
    lrs = [get_lr(step, max_lr=1.0, warmup_steps=10, total_steps=100, min_lr=0.1) for step in range(120)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[100] == lrs[119] == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.55)


def test_poly_schedule_decays_quadratically_to_the_floor_and_unknown_names_are_refused() -> None:
    lrs = [get_lr(step, max_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.0, schedule="poly")
           for step in range(120)]
    assert lrs[10] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.25) and lrs[110] == 0.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    with pytest.raises(ValueError, match="schedule"):
        get_lr(20, max_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.0, schedule="step")


def test_head_has_its_own_rate_and_weight_decay() -> None:
    encoder, objective = torch.nn.Linear(4, 3), torch.nn.Linear(3, 5, bias=False)
    optimizer = make_optimiser(encoder, objective, lr=1e-3, head_lr=1e-1, weight_decay=1e-4, head_weight_decay=5e-4)
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert (by_param[id(objective.weight)]["lr"], by_param[id(objective.weight)]["weight_decay"]) == (1e-1, 5e-4)
    assert (by_param[id(encoder.weight)]["lr"], by_param[id(encoder.weight)]["weight_decay"]) == (1e-3, 1e-4)
    assert by_param[id(encoder.bias)]["weight_decay"] == 0.0
