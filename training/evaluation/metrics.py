"""Retrieval metrics on L2-normalised embeddings (Musgrave et al. 2020, "A Metric Learning Reality Check").

Every sample is a query against all others (itself excluded); R is the number of other samples of
its class. Queries with R = 0 are skipped by every metric. Pure numpy; inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

CHUNK_ROWS = 1024


def _check(embeddings: np.ndarray, labels: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes; returns float32 (N, D) embeddings (dense, or scipy CSR if given sparse, e.g.
    TF-IDF) and (N,) int class codes."""
    embeddings = (embeddings.tocsr().astype(np.float32) if sparse.issparse(embeddings)
                  else np.asarray(embeddings, dtype=np.float32))
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {embeddings.shape}")
    label_array = np.asarray(labels)
    if label_array.shape != (embeddings.shape[0],):
        raise ValueError(f"labels must be ({embeddings.shape[0]},), got shape {label_array.shape}")
    _, codes = np.unique(label_array, return_inverse=True)
    return embeddings, codes.reshape(-1)


def ranked_relevance(embeddings: np.ndarray, labels: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query with R > 0: (Q, max_R) bool, True where the k-th nearest other sample shares its
    class (neighbours by inner product, descending); and (Q,) its R."""
    embeddings, codes = _check(embeddings, labels)
    counts = np.bincount(codes)
    r_all = counts[codes] - 1
    queries = np.flatnonzero(r_all > 0)
    if queries.size == 0:
        raise ValueError("no query has another sample of its class; the metrics are undefined")
    k = int(r_all.max())
    relevance = np.zeros((queries.size, k), dtype=bool)
    for start in range(0, queries.size, CHUNK_ROWS):
        rows = queries[start:start + CHUNK_ROWS]
        sims = embeddings[rows] @ embeddings.T  # (B, N)
        sims = sims.toarray() if sparse.issparse(sims) else sims
        sims[np.arange(rows.size), rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # k <= N - 1, the k most similar, unordered
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        neighbours = np.take_along_axis(top, order, axis=1)[:, :k]
        relevance[start:start + rows.size] = codes[neighbours] == codes[rows][:, None]
    return relevance, r_all[queries]


def precision_at_1(embeddings: np.ndarray, labels: Sequence | np.ndarray) -> float:
    """Fraction of queries whose nearest other sample has their class."""
    relevance, _ = ranked_relevance(embeddings, labels)
    return float(relevance[:, 0].mean())


def _within_r(relevance: np.ndarray, r: np.ndarray) -> np.ndarray:
    return relevance & (np.arange(relevance.shape[1])[None, :] < r[:, None])


def r_precision(embeddings: np.ndarray, labels: Sequence | np.ndarray) -> float:
    """Mean over queries of (same-class samples among the R nearest) / R."""
    relevance, r = ranked_relevance(embeddings, labels)
    return float((_within_r(relevance, r).sum(axis=1) / r).mean())


def map_at_r(embeddings: np.ndarray, labels: Sequence | np.ndarray) -> float:
    """Mean over queries of (1/R) * sum_{i<=R} P(i) * rel(i), P(i) = precision of the i nearest."""
    relevance, r = ranked_relevance(embeddings, labels)
    return _map_at_r_from(relevance, r)


def _map_at_r_from(relevance: np.ndarray, r: np.ndarray) -> float:
    hits = _within_r(relevance, r)
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)[None, :]
    return float(((precision_at_i * hits).sum(axis=1) / r).mean())


def retrieval_metrics(embeddings: np.ndarray, labels: Sequence | np.ndarray) -> dict[str, float]:
    """All three metrics from one neighbour search: precision_at_1, r_precision, map_at_r."""
    relevance, r = ranked_relevance(embeddings, labels)
    return {"precision_at_1": float(relevance[:, 0].mean()),
            "r_precision": float((_within_r(relevance, r).sum(axis=1) / r).mean()),
            "map_at_r": _map_at_r_from(relevance, r),
            "num_queries": int(r.size)}


def _subsample(embeddings: np.ndarray, labels: Sequence | np.ndarray, max_items: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated dense (N, D) embeddings and (N,) class codes, cut to a seeded random ``max_items`` if larger."""
    embeddings, codes = _check(embeddings, labels)
    if sparse.issparse(embeddings):
        raise ValueError("angle statistics need dense embeddings")
    if len(codes) > max_items:
        keep = np.sort(np.random.default_rng(seed).choice(len(codes), max_items, replace=False))
        embeddings, codes = embeddings[keep], np.unique(codes[keep], return_inverse=True)[1].reshape(-1)
    return embeddings, codes


def _degrees(cos: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _pair_angles(embeddings: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    upper = np.triu(np.ones((len(codes), len(codes)), dtype=bool), k=1)
    same = codes[:, None] == codes[None, :]
    pairs = _degrees(embeddings @ embeddings.T)
    return pairs[same & upper], pairs[~same & upper]


def pair_angles(embeddings: np.ndarray, labels: Sequence | np.ndarray, *,
                max_items: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Angles in degrees of every positive and every negative pair (each unordered pair once, no self
    pairs) of (N, D) L2-normalised embeddings: ((P,), (Q,)) float arrays, for plotting their distributions.
    Above ``max_items`` samples a seeded random subset is used (the pair matrix is N x N)."""
    return _pair_angles(*_subsample(embeddings, labels, max_items, seed))


def angle_statistics(embeddings: np.ndarray, labels: Sequence | np.ndarray, *,
                     max_items: int = 3000, seed: int = 0) -> dict[str, float]:
    """ArcFace-paper angle statistics in degrees of (N, D) L2-normalised embeddings.

    to_centre_deg: mean angle of samples to their class centre ("Intra"); between_centres_deg: mean angle
    between class centres; nearest_centre_deg: mean over classes of the angle to the nearest other centre
    (the paper's "Inter", mean of minimum angles between centres); min_between_centres_deg: the smallest
    angle between any two centres; positive_pairs_deg / negative_pairs_deg: mean angle of same-class /
    different-class pairs (self pairs excluded). NaN where undefined (one class, or no positive pair).
    Above ``max_items`` samples a seeded random subset is used (the pair matrix is N x N)."""
    embeddings, codes = _subsample(embeddings, labels, max_items, seed)
    num_classes = int(codes.max()) + 1
    centres = np.zeros((num_classes, embeddings.shape[1]), np.float64)
    np.add.at(centres, codes, embeddings)
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    to_centre = _degrees(np.einsum("nd,nd->n", embeddings, centres[codes]))
    between = _degrees(centres @ centres.T)
    np.fill_diagonal(between, np.inf)
    positives, negatives = _pair_angles(embeddings, codes)
    nan = float("nan")
    several = num_classes > 1
    return {"to_centre_deg": float(to_centre.mean()),
            "between_centres_deg": float(between[np.isfinite(between)].mean()) if several else nan,
            "nearest_centre_deg": float(between.min(axis=1).mean()) if several else nan,
            "min_between_centres_deg": float(between.min()) if several else nan,
            "positive_pairs_deg": float(positives.mean()) if positives.size else nan,
            "negative_pairs_deg": float(negatives.mean()) if negatives.size else nan}
