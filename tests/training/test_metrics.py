"""Retrieval metrics against hand-computed examples, a brute-force loop and pytorch-metric-learning."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from arcsearch.training.evaluation.metrics import (
    angle_statistics,
    map_at_r,
    pair_angles,
    precision_at_1,
    r_precision,
    retrieval_metrics,
)


def on_circle(degrees: list[float]) -> np.ndarray:
    """(N, 2) unit vectors at the given angles; neighbours are ordered by angular distance."""
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_hand_computed_example_with_r_of_three() -> None:
    # A at 0, 20, 26, 33 degrees; B at 10 (R = 0: skipped as a query, still a neighbour).
    # A0 -> B, A, A: rel 0 1 1, AP = (1/2 + 2/3)/3 = 7/18 | A20 -> A26, B, A33: 1 0 1, AP = (1 + 2/3)/3 = 5/9
    # A26 -> A20, A33, B: 1 1 0, AP = 2/3             | A33 -> A26, A20, B: 1 1 0, AP = 2/3
    embeddings = on_circle([0, 20, 26, 33, 10])
    labels = ["A", "A", "A", "A", "B"]
    assert precision_at_1(embeddings, labels) == pytest.approx(3 / 4)
    assert r_precision(embeddings, labels) == pytest.approx(2 / 3)
    assert map_at_r(embeddings, labels) == pytest.approx((7 / 18 + 5 / 9 + 2 / 3 + 2 / 3) / 4)


def test_hand_computed_example_with_three_classes() -> None:
    # A0 -> B12, A30: AP 1/4, RP 1/2 | A30 -> B12, A0: 1/4, 1/2 | A65 -> A30, B12: 1/2, 1/2
    # B12 -> A0: 0 | B190 -> C250: 0 | C250 has R = 0 and is skipped.
    embeddings = on_circle([0, 30, 65, 12, 190, 250])
    labels = np.array([0, 0, 0, 1, 1, 2])
    result = retrieval_metrics(embeddings, labels)
    assert result["num_queries"] == 5
    assert result["precision_at_1"] == pytest.approx(1 / 5)
    assert result["r_precision"] == pytest.approx((0.5 + 0.5 + 0.5) / 5)
    assert result["map_at_r"] == pytest.approx((0.25 + 0.25 + 0.5) / 5)


def brute_force(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Textbook loops: each query against all others, R = other samples of its class."""
    p1, rp, ap = [], [], []
    for q in range(len(labels)):
        others = [i for i in range(len(labels)) if i != q]
        r = sum(labels[i] == labels[q] for i in others)
        if r == 0:
            continue
        ranked = sorted(others, key=lambda i: -float(embeddings[q] @ embeddings[i]))[:r]
        rel = [labels[i] == labels[q] for i in ranked]
        p1.append(float(rel[0]))
        rp.append(sum(rel) / r)
        ap.append(sum(sum(rel[:k + 1]) / (k + 1) for k in range(r) if rel[k]) / r)
    return {"precision_at_1": np.mean(p1), "r_precision": np.mean(rp), "map_at_r": np.mean(ap)}


def random_clusters(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, size=60)
    centres = rng.normal(size=(6, 8))
    embeddings = centres[labels] + rng.normal(scale=1.2, size=(60, 8))
    return (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32), labels


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_and_pytorch_metric_learning(seed: int) -> None:
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    embeddings, labels = random_clusters(seed)
    ours = retrieval_metrics(embeddings, labels)
    for name, value in brute_force(embeddings, labels).items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    calculator = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                                    device=torch.device("cpu"))
    theirs = calculator.get_accuracy(torch.from_numpy(embeddings), torch.from_numpy(labels))
    assert ours["precision_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(theirs["r_precision"], abs=1e-6)
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)


def test_sparse_input_gives_the_same_numbers() -> None:
    embeddings, labels = random_clusters(2)
    assert retrieval_metrics(sparse.csr_matrix(embeddings), labels) == pytest.approx(
        retrieval_metrics(embeddings, labels))


def test_perfect_and_errors() -> None:
    embeddings = on_circle([0, 1, 90, 91, 180, 181])
    perfect = retrieval_metrics(embeddings, ["a", "a", "b", "b", "c", "c"])
    assert perfect["precision_at_1"] == perfect["r_precision"] == perfect["map_at_r"] == 1.0
    with pytest.raises(ValueError, match="no query"):
        map_at_r(embeddings, ["a", "b", "c", "d", "e", "f"])
    with pytest.raises(ValueError, match="labels"):
        map_at_r(embeddings, ["a", "a"])


def test_angle_statistics_in_degrees() -> None:
    stats = angle_statistics(on_circle([0, 10, 90, 100]), ["a", "a", "b", "b"])
    assert stats["to_centre_deg"] == pytest.approx(5.0, abs=1e-3)
    assert stats["positive_pairs_deg"] == pytest.approx(10.0, abs=1e-3)
    assert stats["between_centres_deg"] == pytest.approx(90.0, abs=1e-3)
    assert stats["negative_pairs_deg"] == pytest.approx((90 + 100 + 80 + 90) / 4, abs=1e-3)


def test_angle_statistics_between_centres_mean_nearest_and_minimum() -> None:
    # Centres at 5, 65 and 185 degrees: 60, 180 and 120 apart; nearest other centre 60, 60, 120.
    stats = angle_statistics(on_circle([0, 10, 60, 70, 180, 190]), ["a", "a", "b", "b", "c", "c"])
    assert stats["between_centres_deg"] == pytest.approx(120.0, abs=1e-3)
    assert stats["nearest_centre_deg"] == pytest.approx(80.0, abs=1e-3)
    assert stats["min_between_centres_deg"] == pytest.approx(60.0, abs=1e-3)
    one_class = angle_statistics(on_circle([0, 10, 20]), ["a", "a", "a"])
    assert np.isnan(one_class["min_between_centres_deg"]) and np.isnan(one_class["negative_pairs_deg"])


def test_pair_angles_are_every_unordered_pair_once() -> None:
    degrees = [0, 10, 60, 75, 180, 200, 300]
    labels = ["a", "a", "b", "b", "c", "c", "c"]
    positives, negatives = pair_angles(on_circle(degrees), labels)
    expected_pos, expected_neg = [], []
    for i in range(len(degrees)):
        for j in range(i + 1, len(degrees)):
            gap = abs(degrees[i] - degrees[j]) % 360
            (expected_pos if labels[i] == labels[j] else expected_neg).append(min(gap, 360 - gap))
    assert np.sort(positives) == pytest.approx(sorted(expected_pos), abs=1e-3)
    assert np.sort(negatives) == pytest.approx(sorted(expected_neg), abs=1e-3)
    stats = angle_statistics(on_circle(degrees), labels)
    assert stats["positive_pairs_deg"] == pytest.approx(np.mean(expected_pos), abs=1e-3)
    assert stats["negative_pairs_deg"] == pytest.approx(np.mean(expected_neg), abs=1e-3)
    embeddings, many = random_clusters(3)
    small_pos, small_neg = pair_angles(embeddings, many, max_items=20, seed=1)
    assert small_pos.size + small_neg.size == 20 * 19 // 2
