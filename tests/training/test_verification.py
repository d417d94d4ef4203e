"""Verification pairs, LFW 10-fold accuracy and TAR@FAR against known answers, brute force and scikit-learn."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import roc_curve

from arcsearch.training.evaluation import verification
from arcsearch.training.evaluation.verification import (
    best_threshold,
    fold_ids,
    pair_scores,
    tar_at_far,
    verification_accuracy_10fold,
    verification_pairs,
    verification_report,
)


def all_pairs(labels: np.ndarray) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """Every unordered pair (i < j), split into same-class and different-class."""
    same, different = set(), set()
    for i, j in itertools.combinations(range(len(labels)), 2):
        (same if labels[i] == labels[j] else different).add((i, j))
    return same, different


def as_set(first: np.ndarray, second: np.ndarray) -> set[tuple[int, int]]:
    return {(min(i, j), max(i, j)) for i, j in zip(first.tolist(), second.tolist(), strict=True)}


def test_pairs_are_every_positive_and_as_many_distinct_random_negatives() -> None:
    labels = np.array(["b", "a", "c", "a", "b", "a", "c", "c", "c", "d"])  # 3 + 1 + 6 + 0 positives
    first, second, is_same = verification_pairs(labels, seed=3)
    positives, negatives = all_pairs(labels)
    assert as_set(first[is_same], second[is_same]) == positives
    assert (~is_same).sum() == len(positives) == 10
    assert as_set(first[~is_same], second[~is_same]) <= negatives
    assert len(as_set(first, second)) == len(first)  # no pair twice, in either order
    assert (first != second).all()
    assert np.array_equal(labels[first] == labels[second], is_same)
    again = verification_pairs(labels, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((first, second, is_same), again, strict=True))
    other_seeds = [as_set(*verification_pairs(labels, seed=s)[:2]) for s in range(4, 9)]
    assert any(pairs != as_set(first, second) for pairs in other_seeds)


def test_positive_cap_draws_a_subset_and_negatives_stop_at_what_exists() -> None:
    labels = np.repeat(np.arange(4), [7, 5, 3, 6])  # 21 + 10 + 3 + 15 = 49 positives, 161 negatives
    positives, negatives = all_pairs(labels)
    first, second, is_same = verification_pairs(labels, seed=0, max_positive_pairs=20, num_negative_pairs=10_000)
    assert is_same.sum() == 20 and len(as_set(first[is_same], second[is_same])) == 20
    assert as_set(first[is_same], second[is_same]) <= positives
    assert as_set(first[~is_same], second[~is_same]) == negatives
    first, _, is_same = verification_pairs(labels, max_positive_pairs=None, num_negative_pairs=5)
    assert (is_same.sum(), (~is_same).sum()) == (49, 5)


def test_sampled_pairs_cover_the_classes_uniformly() -> None:
    labels = np.repeat(np.arange(2), [30, 10])  # 435 and 45 positives: uniform pairs favour class 0 by 435:45
    counts = np.zeros(2)
    for seed in range(20):
        first, _, is_same = verification_pairs(labels, seed=seed, max_positive_pairs=48)
        counts += np.bincount(labels[first[is_same]], minlength=2)
    assert counts[0] / counts.sum() == pytest.approx(435 / 480, abs=0.03)


def brute_force_best_accuracy(scores: np.ndarray, is_same: np.ndarray) -> float:
    candidates = np.r_[-np.inf, scores, (scores[:, None] + scores[None, :]).ravel() / 2]
    return max(float(((scores > t) == is_same).mean()) for t in candidates)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_threshold_is_the_exact_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    is_same = rng.random(80) < 0.4
    scores = np.round(rng.normal(size=80) + is_same, 1)  # rounding makes ties
    threshold, accuracy = best_threshold(scores, is_same)
    assert accuracy == pytest.approx(brute_force_best_accuracy(scores, is_same))
    assert ((scores > threshold) == is_same).mean() == pytest.approx(accuracy)


def test_ten_fold_accuracy_known_answer() -> None:
    # 100 positives at 0.9, 90 negatives at 0.1 and 10 at 0.95: every training split puts the threshold
    # at 0.5 and each held fold of 20 pairs loses exactly its 0.95 negatives, so the mean is 1 - 10/200.
    scores = np.r_[np.full(100, 0.9), np.full(90, 0.1), np.full(10, 0.95)]
    is_same = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    result = verification_accuracy_10fold(scores, is_same, seed=4)
    assert result["accuracy_mean"] == pytest.approx(0.95)
    assert result["threshold"] == pytest.approx(0.5)
    ids = fold_ids(is_same, 10, seed=4)
    assert np.bincount(ids).tolist() == [20] * 10
    hard = np.bincount(ids[100 + 90:], minlength=10)  # the 0.95 negatives per fold
    assert result["fold_accuracies"] == pytest.approx((1 - hard / 20).tolist())
    assert result["accuracy_std"] == pytest.approx(float(np.std(1 - hard / 20)))


def test_ten_fold_accuracy_matches_brute_force_folds() -> None:
    rng = np.random.default_rng(7)
    is_same = rng.random(300) < 0.5
    scores = rng.normal(size=300) + 1.5 * is_same
    result = verification_accuracy_10fold(scores, is_same, seed=1)
    ids = fold_ids(is_same, 10, seed=1)
    expected = []
    for fold in range(10):
        train, held = ids != fold, ids == fold
        values = np.unique(scores[train])
        candidates = np.r_[values[0] - 1, (values[:-1] + values[1:]) / 2, values[-1]]  # the protocol's cut points
        accuracies = [((scores[train] > t) == is_same[train]).mean() for t in candidates]
        best = candidates[int(np.argmax(accuracies))]
        expected.append(((scores[held] > best) == is_same[held]).mean())
    assert result["accuracy_mean"] == pytest.approx(np.mean(expected))
    separable = verification_accuracy_10fold(np.r_[np.ones(50), np.zeros(50)], np.r_[np.ones(50), np.zeros(50)])
    assert (separable["accuracy_mean"], separable["accuracy_std"]) == (1.0, 0.0)


def test_tar_at_far_known_answer() -> None:
    negatives = np.arange(1000.0)           # FAR 1e-2 allows 10 false accepts: threshold 989 (11th highest)
    positives = np.arange(100.0) * 10 + 500  # 500..1490: 51 above 989, 50 above 998
    scores = np.r_[positives, negatives]
    is_same = np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    result = tar_at_far(scores, is_same)
    assert set(result) == {"1e-2", "1e-3"}
    assert (result["1e-2"]["threshold"], result["1e-2"]["tar"], result["1e-2"]["far_achieved"]) == (989, 0.51, 0.01)
    assert (result["1e-3"]["threshold"], result["1e-3"]["tar"], result["1e-3"]["far_achieved"]) == (998, 0.5, 0.001)


def test_tar_at_far_rejects_ties_at_the_threshold_and_says_when_negatives_are_too_few() -> None:
    scores = np.r_[0.5, 0.5, 0.7, 0.9, np.full(1000, 0.5)]
    is_same = np.r_[np.ones(4, bool), np.zeros(1000, bool)]
    entry = tar_at_far(scores, is_same, fars=(1e-2,))["1e-2"]
    assert (entry["threshold"], entry["far_achieved"], entry["tar"]) == (0.5, 0.0, 0.5)
    few = tar_at_far(np.r_[0.9, np.linspace(0, 0.5, 500)], np.r_[True, np.zeros(500, bool)])
    assert few["1e-2"]["measurable"] and few["1e-2"]["tar"] == 1.0
    assert not few["1e-3"]["measurable"] and math.isnan(few["1e-3"]["tar"])
    assert few["1e-3"]["negatives_needed"] == 1000 and few["1e-3"]["num_negatives"] == 500


@pytest.mark.parametrize("seed", [0, 1])
def test_tar_at_far_matches_scikit_learn_roc_curve(seed: int) -> None:
    rng = np.random.default_rng(seed)
    is_same = np.r_[np.ones(400, bool), np.zeros(3000, bool)]
    scores = np.round(rng.normal(size=is_same.size) + 2.0 * is_same, 2)  # ties within and across classes
    fars = (1e-3, 1e-2, 0.05, 0.3)
    ours = tar_at_far(scores, is_same, fars)
    fpr, tpr, _ = roc_curve(is_same, scores, drop_intermediate=False)
    for far in fars:
        entry = next(e for e in ours.values() if e["far"] == far)
        assert entry["tar"] == pytest.approx(tpr[fpr <= far + 1e-12].max(), abs=1e-12), far
        assert entry["far_achieved"] <= far


def test_verification_report_on_clusters() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 10)
    centres = rng.normal(size=(10, 32))
    tight = centres[labels] + 0.05 * rng.normal(size=(100, 32))
    report = verification_report(tight, labels, seed=1)
    assert (report["num_pos_pairs"], report["num_neg_pairs"], report["num_far_neg_pairs"]) == (450, 450, 4500)
    assert report["accuracy_mean"] == 1.0 and report["tar_at_far_1e-3"] == 1.0
    assert report == verification_report(tight, labels, seed=1)
    noisy = verification_report(centres[labels] + 2.0 * rng.normal(size=(100, 32)), labels, seed=1)
    assert 0.5 < noisy["accuracy_mean"] < report["accuracy_mean"]
    small = verification_report(tight[:40], labels[:40])  # 4 classes: 180 positives, 600 negatives in all
    assert small["tar_at_far_1e-3"] is None and small["far_negatives_needed_1e-3"] == 1000
    assert small["tar_at_far_1e-2"] == 1.0


def test_scores_are_cosines_dense_sparse_and_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    assert pair_scores(vectors, np.array([0, 0]), np.array([1, 2])) == pytest.approx([math.sqrt(0.5), 0.0])
    rng = np.random.default_rng(0)
    dense = rng.random((30, 12)) * (rng.random((30, 12)) < 0.3)
    dense[0] = 0.0  # an empty row scores 0, not NaN
    first, second = rng.integers(0, 30, 100), rng.integers(0, 30, 100)
    expected = [float(dense[i] @ dense[j]) / max(np.linalg.norm(dense[i]) * np.linalg.norm(dense[j]), 1e-24)
                for i, j in zip(first, second, strict=True)]
    monkeypatch.setattr(verification, "PAIR_CHUNK", 7)
    assert pair_scores(dense, first, second) == pytest.approx(expected)
    assert pair_scores(sparse.csr_matrix(dense), first, second) == pytest.approx(expected)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="both positive and negative"):
        verification_accuracy_10fold(np.ones(20), np.ones(20, bool))
    with pytest.raises(ValueError, match="equal"):
        tar_at_far(np.ones(3), np.ones(4, bool))
    with pytest.raises(ValueError, match="far must be"):
        tar_at_far(np.r_[1.0, 0.0], np.r_[True, False], fars=(0.0,))
    with pytest.raises(ValueError, match="at least 2"):
        verification_pairs(["a"])
    with pytest.raises(ValueError, match="both positive and negative"):
        verification_report(np.eye(4), ["a", "b", "c", "d"])


def test_score_and_table_carry_verification() -> None:
    from arcsearch.training.evaluation.scoring import format_table, score

    rng = np.random.default_rng(0)
    labels = [f"person{i}" for i in np.repeat(np.arange(10), 10)]
    vectors = rng.normal(size=(10, 16))[np.repeat(np.arange(10), 10)] + 0.8 * rng.normal(size=(100, 16))
    full = score(vectors, labels)
    assert full["verification"] == verification_report(vectors, labels)
    few = score(vectors[:30], labels[:30], angles=False)  # 300 negatives: TAR@1e-3 not measurable
    tiny = score(vectors[[0, 1, 10, 11]], [labels[i] for i in (0, 1, 10, 11)])  # 2 + 2 pairs: no 10 folds
    assert "verification" not in tiny and "angles" not in few
    lines = format_table({"arcface": {**full, "train_seconds": 3.0}, "few": few, "tiny": tiny}).splitlines()
    assert lines[0].split() == ["method", "P@1", "R-prec", "MAP@R", "verif", "acc", "TAR@1e-3", "train", "s"]
    arcface, few_row, tiny_row = (line.split() for line in lines[2:])
    verif = full["verification"]
    assert arcface[4] == f"{verif['accuracy_mean']:.4f}±{verif['accuracy_std']:.4f}"
    assert arcface[5] == f"{verif['tar_at_far_1e-3']:.4f}" and arcface[6] == "3.0"
    assert few_row[5] == "n/a" and tiny_row[4:] == ["n/a", "n/a"]
