"""Training objectives: margins against pytorch-metric-learning and naive versions, values and gradients;
every registered objective trains; sub-center ArcFace finds planted label noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses as pml

from arcsearch.training.config import TrainConfig
from arcsearch.training.data.samplers import pk_batches
from arcsearch.training.engine.loop import fit
from arcsearch.training.objectives.margins import arcface_logits, combined_margin_logits, cosface_logits, sphereface_psi
from arcsearch.training.objectives.params import ObjectiveParams
from arcsearch.training.objectives.registry import OBJECTIVES, build_objective
from arcsearch.training.objectives.triplet import batch_hard_triplet_loss

SCALE, MARGIN_RAD, COSFACE_MARGIN, SUBCENTERS = 30.0, 0.5, 0.35, 3
PARAMS = ObjectiveParams(scale=SCALE, margin_rad=MARGIN_RAD, cosface_margin=COSFACE_MARGIN, subcenters=SUBCENTERS)


def pml_reference(name: str, num_classes: int, dim: int, weight: torch.Tensor) -> torch.nn.Module:
    """pml's loss for ``name`` with our (rows, D) ``weight`` as its W (D, rows); pml's ArcFace margins are in
    degrees, CosFace's is a cosine like ours; pml's sub-centre columns c*k + j are our rows c*k + j."""
    if name == "arcface":
        reference = pml.ArcFaceLoss(num_classes, dim, margin=math.degrees(MARGIN_RAD), scale=SCALE)
    elif name == "cosface":
        reference = pml.CosFaceLoss(num_classes, dim, margin=COSFACE_MARGIN, scale=SCALE)
    else:
        reference = pml.SubCenterArcFaceLoss(num_classes=num_classes, embedding_size=dim, sub_centers=SUBCENTERS,
                                             margin=math.degrees(MARGIN_RAD), scale=SCALE)
    reference.W.data = weight.t().clone()
    return reference


@pytest.mark.parametrize("name", ["arcface", "cosface", "subcenter_arcface"])
def test_margin_losses_match_pytorch_metric_learning_values_and_gradients(name: str) -> None:
    num_classes, dim = 7, 16
    gen = torch.Generator().manual_seed(3)
    ours = build_objective(name, num_classes, dim, PARAMS).double()
    weight = torch.nn.functional.normalize(torch.randn(ours.weight.shape, generator=gen, dtype=torch.float64), dim=1)
    embeddings = torch.randn(32, dim, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (32,), generator=gen)
    if name == "arcface":  # targets past pi - m: the fallback region
        embeddings[:4] = -weight[labels[:4]] + 0.05 * embeddings[:4]
    ours.weight.data.copy_(weight)
    ours_emb = embeddings.clone().requires_grad_(True)
    loss = ours(ours_emb, labels).loss
    loss.backward()

    reference = pml_reference(name, num_classes, dim, weight)
    ref_emb = embeddings.clone().requires_grad_(True)
    theirs = reference(ref_emb, labels)
    theirs.backward()

    torch.testing.assert_close(loss, theirs, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours_emb.grad, ref_emb.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(ours.weight.grad, reference.W.grad.t(), rtol=1e-7, atol=1e-9)


def test_sphereface_psi_is_decreasing_and_cos_m_theta_on_the_first_piece() -> None:
    theta = torch.linspace(0.0, math.pi, 4001, dtype=torch.float64)
    for m in (1.0, 1.35, 2.0, 2.5, 4.0):
        psi = sphereface_psi(theta, m)
        assert (psi.diff() < 0).all(), f"psi must fall over [0, pi] for m={m}"
        first = theta <= math.pi / m
        torch.testing.assert_close(psi[first], torch.cos(m * theta[first]))
    torch.testing.assert_close(sphereface_psi(theta, 1.0), torch.cos(theta))


def test_sphereface_psi_matches_pml_multiple_angle_formula_for_integer_m() -> None:
    cosine = torch.linspace(-0.999, 0.999, 501, dtype=torch.float64)
    for m in (2, 3, 4):
        reference = pml.LargeMarginSoftmaxLoss(num_classes=2, embedding_size=2, margin=m)
        reference.cast_types(torch.float64, "cpu")
        expected = reference.modify_cosine_of_target_classes(cosine)
        torch.testing.assert_close(sphereface_psi(torch.acos(cosine), float(m)), expected, rtol=1e-9, atol=1e-9)


def cosines_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    """(40, 5) float64 cosines whose targets sweep (-1, 1), the fallback regions included."""
    gen = torch.Generator().manual_seed(0)
    cosine = torch.rand(40, 5, generator=gen, dtype=torch.float64) * 1.98 - 0.99
    labels = torch.arange(40) % 5
    cosine[torch.arange(40), labels] = torch.linspace(-0.995, 0.995, 40, dtype=torch.float64)
    return cosine, labels


@pytest.mark.parametrize(("m1", "m2", "m3", "reference"), [
    (1.0, MARGIN_RAD, 0.0, lambda c, y: arcface_logits(c, y, scale=SCALE, margin_rad=MARGIN_RAD)),
    (1.0, 0.0, COSFACE_MARGIN, lambda c, y: cosface_logits(c, y, scale=SCALE, margin=COSFACE_MARGIN)),
])
def test_combined_margin_reduces_to_arcface_and_cosface(m1: float, m2: float, m3: float, reference) -> None:
    cosine, labels = cosines_and_labels()
    ours_in, ref_in = cosine.clone().requires_grad_(True), cosine.clone().requires_grad_(True)
    ours = combined_margin_logits(ours_in, labels, scale=SCALE, m1=m1, m2=m2, m3=m3)
    expected = reference(ref_in, labels)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-9)
    weights = torch.randn(cosine.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (ours * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(("m1", "m2", "m3"), [(1.0, 0.3, 0.2), (0.9, 0.4, 0.15), (1.35, 0.0, 0.0), (1.2, 0.3, 0.1)])
def test_combined_margin_target_falls_over_all_angles_and_lowers_every_target(m1: float, m2: float,
                                                                              m3: float) -> None:
    sweep = torch.linspace(-1.0, 1.0, 4001, dtype=torch.float64).view(-1, 1)
    target = combined_margin_logits(sweep, torch.zeros(len(sweep), dtype=torch.long), scale=1.0,
                                    m1=m1, m2=m2, m3=m3)[:, 0]
    assert (target.diff() > 0).all(), "the target logit must fall as theta grows (rise with cos)"
    inside = sweep[:, 0].abs() < 0.99
    assert (target[inside] < sweep[inside, 0]).all(), "the margin lowers every target"


def test_gradients_stay_finite_at_cosine_plus_and_minus_one() -> None:
    for name in ("sphereface", "combined", "cosface"):
        objective = build_objective(name, 3, 2, PARAMS)
        objective.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], requires_grad=True)
        objective(embeddings, torch.tensor([0, 0, 1])).loss.backward()
        assert torch.isfinite(embeddings.grad).all() and torch.isfinite(objective.weight.grad).all(), name


@pytest.mark.parametrize("name", ["arcface", "cosface", "sphereface", "combined", "subcenter_arcface"])
def test_margin_fraction_zero_is_normalised_softmax(name: str) -> None:
    objective = build_objective(name, 5, 8, PARAMS).double()
    objective.margin_fraction = 0.0
    gen = torch.Generator().manual_seed(2)
    embeddings = torch.randn(20, 8, generator=gen, dtype=torch.float64)
    labels = torch.arange(20) % 5
    logits = objective(embeddings, labels).logits
    torch.testing.assert_close(logits, objective.cosine(embeddings) * SCALE)
    objective.margin_fraction = 1.0
    with_margin = objective(embeddings, labels).logits
    assert (with_margin.gather(1, labels.view(-1, 1)) < logits.gather(1, labels.view(-1, 1))).all()


@pytest.mark.parametrize("name", ["arcface", "cosface", "sphereface", "combined", "norm_softmax"])
@pytest.mark.parametrize("fraction", [1.0, 0.4])
def test_folded_forward_equals_rewriting_the_full_cosine_matrix(name: str, fraction: float) -> None:
    """forward scales the embeddings before the matmul and writes the targets in place; the reference
    scales the (N, C) cosine matrix and rewrites it with the same margin: same loss and gradients."""
    objective = build_objective(name, 7, 6, PARAMS).double()
    objective.margin_fraction = fraction
    gen = torch.Generator().manual_seed(3)
    embeddings = torch.randn(21, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(21) % 7
    loss = objective(embeddings, labels).loss
    grads = torch.autograd.grad(loss, [embeddings, objective.weight])
    reference_logits = objective.margin.logits(objective.cosine(embeddings), labels, fraction)
    reference = torch.nn.functional.cross_entropy(reference_logits, labels)
    reference_grads = torch.autograd.grad(reference, [embeddings, objective.weight])
    torch.testing.assert_close(loss, reference)
    for ours, theirs in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(ours, theirs)
    assert grads[1].abs().sum() > 0


def naive_batch_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Loop over anchors: farthest positive, nearest negative by 1 - cos; anchors lacking either skipped."""
    terms = []
    for a in range(len(labels)):
        def distance(b: int, a: int = a) -> torch.Tensor:
            return 1.0 - torch.nn.functional.cosine_similarity(embeddings[a], embeddings[b], dim=0)
        positives = [distance(b) for b in range(len(labels)) if b != a and labels[b] == labels[a]]
        negatives = [distance(b) for b in range(len(labels)) if labels[b] != labels[a]]
        if positives and negatives:
            terms.append(torch.clamp(max(positives) - min(negatives) + margin, min=0.0))
    return torch.stack(terms).mean()


def test_batch_hard_triplet_matches_a_naive_loop_values_and_gradients() -> None:
    gen = torch.Generator().manual_seed(4)
    embeddings = torch.randn(24, 6, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0] * 6 + [1] * 6 + [2] * 5 + [3] * 4 + [4, 5, 6])  # 4, 5, 6: no positive
    ours_in, naive_in = embeddings.clone().requires_grad_(True), embeddings.clone().requires_grad_(True)
    ours = batch_hard_triplet_loss(ours_in, labels, margin=0.2)
    naive = naive_batch_hard(naive_in, labels, 0.2)
    assert ours > 0
    torch.testing.assert_close(ours, naive, rtol=1e-10, atol=1e-12)
    ours.backward()
    naive.backward()
    torch.testing.assert_close(ours_in.grad, naive_in.grad, rtol=1e-8, atol=1e-12)
    assert ours_in.grad[-3:].abs().sum() > 0, "anchorless samples still serve as negatives"


def test_batch_hard_triplet_without_valid_anchor_is_zero_with_a_graph() -> None:
    for labels in (torch.tensor([0, 1, 2, 3]), torch.tensor([1, 1, 1])):
        embeddings = torch.randn(len(labels), 4, requires_grad=True)
        loss = build_objective("triplet", 4, 4, PARAMS)(embeddings, labels).loss
        loss.backward()
        assert loss.item() == 0.0 and torch.equal(embeddings.grad, torch.zeros_like(embeddings))


def test_arcface_triplet_adds_the_weighted_triplet_term_to_arcface() -> None:
    params = ObjectiveParams(scale=SCALE, margin_rad=MARGIN_RAD, triplet_weight=2.5, triplet_margin=0.3)
    combined = build_objective("arcface_triplet", 4, 8, params)
    combined.margin_fraction = 0.5
    arcface = build_objective("arcface", 4, 8, params)
    arcface.weight.data.copy_(combined.classifier.weight.data)
    arcface.margin_fraction = 0.5
    embeddings, labels = torch.randn(16, 8, generator=torch.Generator().manual_seed(5)), torch.arange(16) % 4
    output, expected = combined(embeddings, labels), arcface(embeddings, labels)
    triplet = batch_hard_triplet_loss(embeddings, labels, margin=0.3)
    torch.testing.assert_close(output.loss, expected.loss + 2.5 * triplet)
    torch.testing.assert_close(output.logits, expected.logits)
    torch.testing.assert_close(combined.class_weights(), arcface.class_weights())


def overlapping_classes(num_classes: int = 6, per_class: int = 20,
                        in_dim: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, in_dim) Gaussian inputs around class means close enough that a few dozen steps do not finish the job."""
    gen = torch.Generator().manual_seed(6)
    means = torch.randn(num_classes, in_dim, generator=gen) * 0.5
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return means[labels] + torch.randn(len(labels), in_dim, generator=gen), labels


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_trains_a_linear_encoder(name: str) -> None:
    inputs, labels = overlapping_classes()
    torch.manual_seed(0)
    encoder = torch.nn.Linear(inputs.shape[1], 8)
    objective = build_objective(name, int(labels.max()) + 1, 8, PARAMS)
    codes = labels.numpy()
    rng = np.random.default_rng(0)
    def batches(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(inputs[b], labels[b]) for b in pk_batches(codes, classes_per_batch=4, samples_per_class=5, rng=rng)]
    config = TrainConfig(epochs=5, lr=1e-2, head_lr=5e-2, margin_warmup_fraction=0.0, show_progress=False)
    result = fit(encoder, objective, batches=batches, embed=encoder, config=config,
                 steps_per_epoch=len(codes) // 20)
    assert result.steps == 30
    assert result.epoch_losses[-1] < 0.75 * result.epoch_losses[0], result.epoch_losses


def test_registry_rejects_an_unknown_name_and_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown objective 'arcfase'; choose one of arcface, cosface, .*triplet"):
        build_objective("arcfase", 4, 8)


def test_the_torch_free_name_list_is_the_registry() -> None:
    from arcsearch.training.objectives.params import OBJECTIVE_NAMES, SHARDED_OBJECTIVES

    assert tuple(OBJECTIVES) == OBJECTIVE_NAMES and set(SHARDED_OBJECTIVES) <= set(OBJECTIVES)
