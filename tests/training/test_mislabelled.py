"""Sub-center ArcFace: sub-centre initialisation, dominant sub-centres, and finding planted label noise."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning.losses import SubCenterArcFaceLoss

from arcsearch.training.evaluation.mislabelled import likely_mislabelled
from arcsearch.training.objectives.params import ObjectiveParams
from arcsearch.training.objectives.registry import build_objective
from arcsearch.training.objectives.subcenter import SubCenterClassifier

NUM_CLASSES, PER_CLASS, DIM, SUBCENTERS, NUM_PLANTED = 8, 40, 32, 3, 12


def subcenter_objective(**params: float) -> SubCenterClassifier:
    objective = build_objective("subcenter_arcface", NUM_CLASSES, DIM, ObjectiveParams(subcenters=SUBCENTERS, **params))
    assert isinstance(objective, SubCenterClassifier)
    return objective


def noisy_clusters() -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(N, DIM) items around one random direction per class (about 17 degrees spread), their (N,) labels
    with ``NUM_PLANTED`` of them moved to another class, and the indices of those."""
    gen = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(NUM_CLASSES, DIM, generator=gen), dim=1)
    truth = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS)
    embeddings = directions[truth] + 0.3 * torch.randn(len(truth), DIM, generator=gen) / DIM ** 0.5
    planted = torch.randperm(len(truth), generator=gen)[:NUM_PLANTED]
    labels = truth.clone()
    labels[planted] = (truth[planted] + torch.randint(1, NUM_CLASSES, (NUM_PLANTED,), generator=gen)) % NUM_CLASSES
    return embeddings, labels, sorted(planted.tolist())


@pytest.fixture(scope="module")
def trained() -> tuple[SubCenterClassifier, torch.Tensor, torch.Tensor, list[int]]:
    """A sub-center objective fitted to the fixed ``noisy_clusters`` embeddings from the (noisy) class means;
    with the embeddings, labels and planted indices."""
    embeddings, labels, planted = noisy_clusters()
    objective = subcenter_objective()
    centres = torch.zeros(NUM_CLASSES, DIM).index_add_(0, labels, embeddings)
    objective.init_from_centres(centres)
    optimizer = torch.optim.Adam(objective.parameters(), lr=0.05)
    objective.train()
    for _ in range(80):
        optimizer.zero_grad()
        objective(embeddings, labels).loss.backward()
        optimizer.step()
    return objective, embeddings, labels, planted


def test_init_from_centres_puts_distinct_seeded_subcentres_near_each_class_centre() -> None:
    centres = torch.randn(NUM_CLASSES, DIM, generator=torch.Generator().manual_seed(1))
    objective, again = subcenter_objective(), subcenter_objective()
    objective.init_from_centres(centres)
    again.init_from_centres(centres)
    torch.testing.assert_close(objective.weight, again.weight)
    subcentres = torch.nn.functional.normalize(objective.subcentres(), dim=2)  # (C, k, D)
    to_centre = torch.einsum("ckd,cd->ck", subcentres, torch.nn.functional.normalize(centres, dim=1))
    angles = torch.rad2deg(torch.acos(to_centre.clamp(-1, 1)))
    assert (angles > 1.0).all() and (angles < 15.0).all(), angles
    assert objective.class_weights().shape == (NUM_CLASSES, DIM)


def test_class_weights_are_the_subcentre_most_training_samples_are_nearest_to(trained) -> None:
    objective, embeddings, labels, _ = trained
    dominant = objective.dominant_subcentres(embeddings, labels)
    torch.testing.assert_close(objective.class_weights(), objective.subcentres()[torch.arange(NUM_CLASSES), dominant])


def test_planted_wrong_labels_rank_first_and_agree_with_pml_outliers(trained) -> None:
    objective, embeddings, labels, planted = trained

    flagged = likely_mislabelled(objective, embeddings, labels, threshold_deg=75.0)
    top = sorted(item["index"] for item in flagged[:NUM_PLANTED])
    assert top == planted, flagged[:NUM_PLANTED + 2]
    angles = [item["angle_to_dominant_deg"] for item in flagged]
    assert angles == sorted(angles, reverse=True)
    clean_angles = [a for item, a in zip(flagged, angles, strict=True) if item["index"] not in planted]
    assert not clean_angles or max(clean_angles) < min(angles[:NUM_PLANTED])

    far_only = likely_mislabelled(objective, embeddings, labels, threshold_deg=75.0, include_non_dominant=False)
    reference = SubCenterArcFaceLoss(num_classes=NUM_CLASSES, embedding_size=DIM, sub_centers=SUBCENTERS)
    reference.W.data = objective.weight.detach().t().clone()
    outliers, dominant_centres = reference.get_outliers(embeddings, labels, threshold=75.0)
    assert sorted(item["index"] for item in far_only) == sorted(outliers.tolist()) == planted, \
        "the paper's rule (farther than 75 degrees from the dominant sub-centre) finds exactly the planted noise"
    dominant = objective.dominant_subcentres(embeddings, labels)
    torch.testing.assert_close(dominant_centres.t(), objective.subcentres()[torch.arange(NUM_CLASSES), dominant])
