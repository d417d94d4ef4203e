"""One embedder shared by the request threads and the re-index jobs of a collection."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

from arcsearch.index.bundle import EmbedderManifest
from arcsearch.index.embedder import ThreadPolicy


class SerialEmbedder:
    """One embedder shared by request threads and re-index jobs; calls run one at a time.

    Tokenizers and torch's intra-op thread pool do not take concurrent calls well; a job holds
    the lock for one batch at a time, so queries interleave with re-indexing. ``threads`` picks torch's
    CPU threads per call (one for a small pass, the other cores for a batch; see ThreadPolicy).
    """

    def __init__(self, inner: Any, threads: ThreadPolicy | None = None) -> None:
        self._inner = inner
        self._threads = threads or ThreadPolicy(parallel_min_batch=0)
        self._lock = threading.Lock()

    @property
    def manifest(self) -> EmbedderManifest:
        return self._inner.manifest

    @property
    def modality(self) -> str:
        return self._inner.modality

    @property
    def dim(self) -> int:
        return self._inner.dim

    def embed_images(self, images: list[Image.Image], *, batch_size: int = 64) -> np.ndarray:
        """(len(images), dim) float32, L2-normalised."""
        with self._lock:
            self._threads.apply(min(len(images), batch_size))
            return self._inner.embed_images(images, batch_size=batch_size)

    def embed_texts(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised."""
        with self._lock:
            self._threads.apply(min(len(texts), batch_size))
            return self._inner.embed_texts(texts, batch_size=batch_size)
