"""Synthetic corpora for the scale benchmark: a Gaussian mixture fitted to real embeddings.

The WordNet glosses embedded by all-MiniLM-L6-v2 (384-d, ``bench.vector_sets.real_vector_set``) are
projected to the wanted dimension by PCA (for d < 384), clustered by k-means into ``components`` clusters,
and each cluster becomes one Gaussian component: its centroid as mean, its members' per-dimension spread
(shrunk half-way to the spread pooled over all clusters, as a cluster holds only ~20 glosses) as diagonal
standard deviation, its share of the glosses as weight. Draws are L2-normalised. Many clusters of
different sizes and spreads: the structure an IVF or HNSW index meets on real embeddings, not uniform noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faiss
import numpy as np

logger = logging.getLogger(__name__)

SHRINK = 0.5  # weight of a cluster's own spread against the pooled spread


@dataclass(frozen=True)
class Mixture:
    """Diagonal Gaussian mixture: means (c, d), standard deviations (c, d), weights (c,) summing to 1."""

    means: np.ndarray
    stds: np.ndarray
    weights: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])


def project(real: np.ndarray, dim: int) -> np.ndarray:
    """Unit (n, ``dim``) rows: PCA of the unit (n, D) ``real`` rows onto their ``dim`` main axes (as is if D == dim)."""
    if dim == real.shape[1]:
        return real
    if dim > real.shape[1]:
        raise ValueError(f"cannot project {real.shape[1]}-d vectors up to {dim} dimensions")
    pca = faiss.PCAMatrix(real.shape[1], dim)
    pca.train(real)
    out = pca.apply(real)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def fit_mixture(real: np.ndarray, *, components: int = 256, seed: int = 0) -> Mixture:
    """A diagonal Gaussian mixture of ``components`` clusters fitted to unit (n, d) ``real`` vectors."""
    kmeans = faiss.Kmeans(real.shape[1], components, niter=25, seed=seed, spherical=True, min_points_per_centroid=1)
    kmeans.train(real)
    _, assigned = kmeans.index.search(real, 1)
    assigned = assigned[:, 0]
    residual = real - kmeans.centroids[assigned]
    pooled = residual.std(axis=0)
    stds = np.empty_like(kmeans.centroids)
    counts = np.bincount(assigned, minlength=components).astype(np.float64)
    for c in range(components):
        own = residual[assigned == c].std(axis=0) if counts[c] > 1 else pooled
        stds[c] = SHRINK * own + (1 - SHRINK) * pooled
    weights = np.maximum(counts, 1) / np.maximum(counts, 1).sum()
    logger.info("fitted a %d-component mixture to %d %d-d vectors", components, len(real), real.shape[1])
    return Mixture(kmeans.centroids.copy(), stds, weights)


def draw(mixture: Mixture, count: int, *, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``count`` unit float32 rows drawn from ``mixture`` (seeded), (count, d)."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, mixture.dim), dtype=np.float32)
    for start in range(0, count, chunk):
        size = min(chunk, count - start)
        comp = rng.choice(len(mixture.weights), size=size, p=mixture.weights)
        rows = mixture.means[comp] + mixture.stds[comp] * rng.standard_normal((size, mixture.dim), dtype=np.float32)
        out[start:start + size] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out
