"""ArcFace margin math against a naive arccos version (the objectives against pytorch-metric-learning are in
test_losses.py)."""

from __future__ import annotations

import math

import pytest
import torch

from arcsearch.training.objectives.margins import arcface_logits

SCALE, MARGIN_RAD = 30.0, 0.5


def naive_arcface(cosine: torch.Tensor, labels: torch.Tensor, *, scale: float, margin_rad: float,
                  easy_margin: bool = False) -> torch.Tensor:
    """Loop over rows; cos(acos(c) + m) for the target, with the same fallback / easy-margin rules."""
    rows = []
    for row, label in zip(cosine, labels.tolist(), strict=True):
        c = row[label]
        theta = torch.acos(c)
        if easy_margin:
            target = torch.cos(theta + margin_rad) if c > 0 else c
        elif theta + margin_rad < math.pi:
            target = torch.cos(theta + margin_rad)
        else:
            target = c - margin_rad * math.sin(margin_rad)
        rows.append(torch.cat([row[:label], target.view(1), row[label + 1:]]))
    return torch.stack(rows) * scale


def cosines_covering_all_regions() -> tuple[torch.Tensor, torch.Tensor]:
    """(12, 5) cosines in (-1, 1) whose target entries cover positive, negative and fallback regions."""
    gen = torch.Generator().manual_seed(0)
    cosine = (torch.rand(12, 5, generator=gen, dtype=torch.float64) * 1.98 - 0.99)
    labels = torch.arange(12) % 5
    targets = torch.tensor([0.99, 0.7, 0.3, 0.01, -0.01, -0.4, -0.85, -0.87, -0.89, -0.95, -0.99, 0.5],
                           dtype=torch.float64)  # cos(pi - 0.5) = -0.8776: the last 4 negatives fall back
    cosine[torch.arange(12), labels] = targets
    return cosine, labels


@pytest.mark.parametrize("easy_margin", [False, True])
def test_values_and_gradients_match_naive_arccos(easy_margin: bool) -> None:
    cosine, labels = cosines_covering_all_regions()
    weights = torch.randn(cosine.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours_in = cosine.clone().requires_grad_(True)
    naive_in = cosine.clone().requires_grad_(True)
    ours = arcface_logits(ours_in, labels, scale=SCALE, margin_rad=MARGIN_RAD, easy_margin=easy_margin)
    naive = naive_arcface(naive_in, labels, scale=SCALE, margin_rad=MARGIN_RAD, easy_margin=easy_margin)
    torch.testing.assert_close(ours, naive, rtol=1e-10, atol=1e-10)
    (ours * weights).sum().backward()
    (naive * weights).sum().backward()
    torch.testing.assert_close(ours_in.grad, naive_in.grad, rtol=1e-8, atol=1e-8)


def test_margin_only_touches_targets_and_keeps_them_monotonic() -> None:
    cosine, labels = cosines_covering_all_regions()
    logits = arcface_logits(cosine, labels, scale=SCALE, margin_rad=MARGIN_RAD)
    off_target = torch.ones_like(cosine, dtype=torch.bool)
    off_target[torch.arange(len(labels)), labels] = False
    torch.testing.assert_close(logits[off_target], cosine[off_target] * SCALE)
    assert (logits[~off_target] < cosine[~off_target] * SCALE).all(), "the margin must lower every target"
    sweep = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float64).view(-1, 1)
    target = arcface_logits(sweep, torch.zeros(len(sweep), dtype=torch.long), scale=1.0,
                            margin_rad=MARGIN_RAD)[:, 0]
    assert (target.diff() > 0).all(), "the target logit must fall as theta grows, fallback region included"


def test_gradient_is_finite_at_cosine_one_and_minus_one() -> None:
    cosine = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    arcface_logits(cosine, torch.zeros(2, dtype=torch.long), scale=SCALE, margin_rad=MARGIN_RAD).sum().backward()
    assert torch.isfinite(cosine.grad).all()


def test_rejects_bad_shapes_and_margins() -> None:
    with pytest.raises(ValueError, match="labels"):
        arcface_logits(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), scale=1.0, margin_rad=0.5)
    with pytest.raises(ValueError, match="margin_rad"):
        arcface_logits(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), scale=1.0, margin_rad=2.0)
