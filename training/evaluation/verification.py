"""Pair verification on held-out classes: the LFW 10-fold accuracy protocol and TAR at fixed FAR.

A pair is accepted ("same class") when its cosine similarity is strictly greater than the threshold.
Pairs are drawn from labelled embeddings: all positive pairs up to a cap, and random negative pairs,
both uniform without replacement and deterministic by seed. Pure numpy; inputs are never modified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

DEFAULT_FARS = (1e-2, 1e-3)
PAIR_CHUNK = 16384


def _pairs_from_counts(rng: np.random.Generator, partners: np.ndarray, first_base: np.ndarray,
                       order: np.ndarray, wanted: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``wanted`` (all if None or more than exist) distinct pairs, uniformly chosen: sorted position q
    pairs with the ``partners[q]`` positions ``first_base[q], first_base[q] + 1, ...``; returns sample ids."""
    ends = np.cumsum(partners)
    total = int(ends[-1]) if ends.size else 0
    count = total if wanted is None else min(wanted, total)
    flat = (np.arange(total) if count == total else np.sort(rng.choice(total, size=count, replace=False)))
    first = np.searchsorted(ends, flat, side="right")
    second = first_base[first] + (flat - (ends[first] - partners[first]))
    return order[first], order[second]


def verification_pairs(labels: Sequence | np.ndarray, *, seed: int = 0, max_positive_pairs: int | None = 3000,
                       num_negative_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P,) first and (P,) second sample indices (first != second, no pair twice) and (P,) bool same-class.

    Positives: every same-class pair, or a seeded uniform subset of ``max_positive_pairs`` (None: no cap).
    Negatives: ``num_negative_pairs`` (default: as many as positives) uniform different-class pairs, or all
    of them if there are fewer. Positives come first, then negatives."""
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    codes = codes.reshape(-1)
    if codes.size < 2:
        raise ValueError(f"need at least 2 labelled samples for pairs, got {codes.size}")
    order = np.argsort(codes, kind="stable")
    class_end = np.cumsum(np.bincount(codes))[codes[order]]  # sorted position one past each sample's class
    positions = np.arange(codes.size)
    rng = np.random.default_rng(seed)
    pos_first, pos_second = _pairs_from_counts(rng, class_end - positions - 1, positions + 1, order,
                                               max_positive_pairs)
    wanted_neg = pos_first.size if num_negative_pairs is None else num_negative_pairs
    neg_first, neg_second = _pairs_from_counts(rng, codes.size - class_end, class_end, order, wanted_neg)
    is_same = np.concatenate([np.ones(pos_first.size, bool), np.zeros(neg_first.size, bool)])
    return np.concatenate([pos_first, neg_first]), np.concatenate([pos_second, neg_second]), is_same


def pair_scores(embeddings: Any, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(P,) float64 cosine similarity of the pairs; (N, D) embeddings dense or scipy sparse (e.g. TF-IDF),
    normalised here, in chunks of ``PAIR_CHUNK`` pairs."""
    if sparse.issparse(embeddings):
        vectors = embeddings.tocsr().astype(np.float64)
        norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    else:
        vectors = np.asarray(embeddings, dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1)
    norms = np.maximum(norms, 1e-12)
    scores = np.empty(len(first), dtype=np.float64)
    for start in range(0, len(first), PAIR_CHUNK):
        a, b = first[start:start + PAIR_CHUNK], second[start:start + PAIR_CHUNK]
        dots = (np.asarray(vectors[a].multiply(vectors[b]).sum(axis=1)).ravel() if sparse.issparse(vectors)
                else np.einsum("pd,pd->p", vectors[a], vectors[b]))
        scores[start:start + len(a)] = dots / (norms[a] * norms[b])
    return scores


def _check_scores(scores: np.ndarray, is_same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, is_same = np.asarray(scores, dtype=np.float64), np.asarray(is_same, dtype=bool)
    if scores.ndim != 1 or scores.shape != is_same.shape:
        raise ValueError(f"scores and is_same must be equal (P,) arrays, got {scores.shape} and {is_same.shape}")
    if not is_same.any() or is_same.all():
        raise ValueError("need both positive and negative pairs")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return scores, is_same


def best_threshold(scores: np.ndarray, is_same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of ``score > threshold``, exactly over all cut points.

    Candidates: just below the lowest score (accept all), midpoints between consecutive distinct scores,
    and the highest score (reject all); on ties in accuracy the lowest such threshold wins."""
    scores, is_same = np.asarray(scores, dtype=np.float64), np.asarray(is_same, dtype=bool)
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_same = scores[order], is_same[order]
    last_of_value = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    negatives_rejected = np.cumsum(~sorted_same)[last_of_value]
    positives_accepted = sorted_same.sum() - np.cumsum(sorted_same)[last_of_value]
    correct = np.r_[sorted_same.sum(), negatives_rejected + positives_accepted]
    values = sorted_scores[last_of_value]
    thresholds = np.r_[np.nextafter(values[0], -np.inf), (values[:-1] + values[1:]) / 2, values[-1]]
    best = int(np.argmax(correct))
    return float(thresholds[best]), float(correct[best] / scores.size)


def fold_ids(is_same: np.ndarray, folds: int, *, seed: int = 0) -> np.ndarray:
    """(P,) fold of each pair: positives and negatives each dealt round-robin after a seeded shuffle, so the
    folds differ in size by at most one and keep the positive/negative ratio."""
    is_same = np.asarray(is_same, dtype=bool)
    rng = np.random.default_rng(seed)
    ids = np.empty(is_same.size, dtype=np.int64)
    positives, negatives = np.flatnonzero(is_same), np.flatnonzero(~is_same)
    ids[rng.permutation(positives)] = np.arange(positives.size) % folds
    ids[rng.permutation(negatives)] = (np.arange(negatives.size) + positives.size) % folds
    return ids


def verification_accuracy_10fold(scores: np.ndarray, is_same: np.ndarray, folds: int = 10, *,
                                 seed: int = 0) -> dict[str, Any]:
    """The LFW protocol: for each fold, the threshold maximising accuracy on the other folds is applied to
    the held fold. Returns accuracy_mean, accuracy_std (population std over folds), threshold (mean of the
    fold thresholds), fold_accuracies and fold_thresholds."""
    scores, is_same = _check_scores(scores, is_same)
    if folds < 2 or scores.size < folds:
        raise ValueError(f"need folds >= 2 and at least that many pairs, got {folds} folds, {scores.size} pairs")
    ids = fold_ids(is_same, folds, seed=seed)
    accuracies, thresholds = [], []
    for fold in range(folds):
        held = ids == fold
        threshold, _ = best_threshold(scores[~held], is_same[~held])
        thresholds.append(threshold)
        accuracies.append(float(((scores[held] > threshold) == is_same[held]).mean()))
    return {"accuracy_mean": float(np.mean(accuracies)), "accuracy_std": float(np.std(accuracies)),
            "threshold": float(np.mean(thresholds)), "fold_accuracies": accuracies, "fold_thresholds": thresholds}


def far_name(far: float) -> str:
    """Short key for a false accept rate: 1e-3 -> '1e-3', 5e-4 -> '5e-4'."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def tar_at_far(scores: np.ndarray, is_same: np.ndarray, fars: Sequence[float] = DEFAULT_FARS) -> dict[str, dict]:
    """True accept rate at each false accept rate, keyed by ``far_name``.

    With n negatives, at most k = floor(far * n) may be accepted: the threshold is the (k+1)-th highest
    negative score and only scores strictly above it are accepted, so negatives tied at the threshold are all
    rejected and the achieved FAR is <= far (below it when ties straddle the cut); positives tied at the
    threshold are rejected too. This is the highest TAR of any threshold with FAR <= far. When
    n < 1 / far not even one false accept is allowed and the FAR cannot be measured: tar and threshold are
    NaN, measurable is False and negatives_needed says how many negatives it would take."""
    scores, is_same = _check_scores(scores, is_same)
    negatives = np.sort(scores[~is_same])[::-1]
    positives = scores[is_same]
    results = {}
    for far in fars:
        if not 0 < far < 1:
            raise ValueError(f"far must be in (0, 1), got {far}")
        needed = math.ceil(1 / far - 1e-9)
        allowed = math.floor(far * negatives.size + 1e-9)
        entry: dict[str, Any] = {"far": far, "num_negatives": int(negatives.size), "negatives_needed": needed,
                                 "measurable": negatives.size >= needed}
        if entry["measurable"]:
            threshold = negatives[allowed]  # allowed <= far * n < n
            entry.update(tar=float((positives > threshold).mean()), threshold=float(threshold),
                         far_achieved=float((negatives > threshold).mean()))
        else:
            entry.update(tar=float("nan"), threshold=float("nan"), far_achieved=float("nan"))
        results[far_name(far)] = entry
    return results


def verification_report(embeddings: Any, labels: Sequence | np.ndarray, *, seed: int = 0,
                        max_positive_pairs: int = 3000, max_far_negative_pairs: int = 100_000,
                        fars: Sequence[float] = DEFAULT_FARS) -> dict[str, Any]:
    """Verification numbers of (N, D) embeddings (dense or sparse) on their classes, flat for a JSON report.

    Accuracy (LFW 10-fold) uses balanced pairs: the positives (capped) and as many random negatives. TAR@FAR
    uses the same positives against up to ``max_far_negative_pairs`` negatives (all if fewer), since low FARs
    need many negatives; None (JSON null) where too few exist, with ``far_negatives_needed_<far>`` saying how
    many it would take (see ``tar_at_far``)."""
    first, second, is_same = verification_pairs(labels, seed=seed, max_positive_pairs=max_positive_pairs)
    accuracy = verification_accuracy_10fold(pair_scores(embeddings, first, second), is_same, seed=seed)
    far_first, far_second, far_same = verification_pairs(labels, seed=seed, max_positive_pairs=max_positive_pairs,
                                                         num_negative_pairs=max_far_negative_pairs)
    tars = tar_at_far(pair_scores(embeddings, far_first, far_second), far_same, fars)
    report: dict[str, Any] = {key: accuracy[key] for key in ("accuracy_mean", "accuracy_std", "threshold")}
    report.update(num_pos_pairs=int(is_same.sum()), num_neg_pairs=int((~is_same).sum()),
                  num_far_neg_pairs=int((~far_same).sum()))
    for name, entry in tars.items():
        if entry["measurable"]:
            report[f"tar_at_far_{name}"] = entry["tar"]
        else:
            report[f"tar_at_far_{name}"], report[f"far_negatives_needed_{name}"] = None, entry["negatives_needed"]
    return report
