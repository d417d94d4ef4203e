"""Baselines reported beside the fine-tuned encoder: the backbone before fine-tuning, raw pixels, TF-IDF."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from torch import Tensor, nn

from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.training.data.streaming import image_batches

RAW_PIXEL_SIDE = 32


class PooledFeatures(nn.Module):
    """Backbone features -> global average pool: (N, 3, H, W) -> (N, feature_dim), e.g. 1280 for MobileNetV2."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


def backbone_baseline(encoder: nn.Module) -> nn.Module:
    """A frozen copy of an ``ImageEncoder``'s backbone with its pooled features, taken before training."""
    features = getattr(encoder, "features", None)
    if not isinstance(features, nn.Module):
        raise TypeError(f"{type(encoder).__name__} has no 'features' backbone to take a baseline from")
    baseline = PooledFeatures(copy.deepcopy(features)).eval()
    baseline.requires_grad_(False)
    return baseline


def raw_pixel_embeddings(paths: Sequence[Path], *, side: int = RAW_PIXEL_SIDE, workers: int = 0) -> np.ndarray:
    """(N, 3 * side * side) L2-normalised, mean-centred pixels of each image file resized to side x side,
    decoded a batch at a time by ``workers`` processes."""
    rows = [pixels.flatten(1).numpy() for pixels, _ in image_batches(
        paths, ImagePreprocessing(height=side, width=side), workers=workers)]
    flat = np.concatenate(rows) if rows else np.zeros((0, 3 * side * side), np.float32)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def tfidf_embeddings(texts: Sequence[str], *, fit_texts: Sequence[str] | None = None) -> sparse.csr_matrix:
    """(N, vocabulary) L2-normalised TF-IDF rows (word uni- and bigrams, sublinear tf, English stop words
    removed); the vocabulary and idf come from ``fit_texts`` (no labels used), default ``texts``."""
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english")
    vectorizer.fit(list(fit_texts if fit_texts is not None else texts))
    return vectorizer.transform(list(texts)).tocsr()
