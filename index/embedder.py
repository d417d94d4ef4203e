"""Loading an exported embedder bundle and embedding batches of images or texts on cpu or cuda."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from arcsearch.index.bundle import BundleError, EmbedderManifest, read_embedder_manifest
from arcsearch.index.loaders import IMAGE_WEIGHTS_FILE as IMAGE_WEIGHTS_FILE  # re-exported: part of this API
from arcsearch.index.loaders import TEXT_WEIGHTS_DIR as TEXT_WEIGHTS_DIR
from arcsearch.index.loaders import load_image_module, load_text_model
from arcsearch.index.long_texts import apply_policy, embed_chunked
from arcsearch.index.preprocess import images_to_batch
from arcsearch.index.threads import available_cores as available_cores  # re-exported: part of this API

logger = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks cuda when available, else cpu; otherwise the named device (error if unusable)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BundleError(f"device {device!r} was asked for, but CUDA is not available")
    return resolved


@dataclass(frozen=True)
class ThreadPolicy:
    """torch CPU threads per forward pass: one for fewer than ``parallel_min_batch`` inputs, else ``threads``.

    A pass split over every core of a busy machine waits for its slowest thread at every layer: on 2 shared
    cores a single text query took 20-40x longer with 2 threads than with 1, and under heavy outside load
    batched passes collapsed the same way. So ``threads`` 0 means one core less than available (at least
    one), which leaves a core to the HTTP side; ``parallel_min_batch`` 0 leaves torch's setting alone.
    """

    threads: int = 0
    parallel_min_batch: int = 4

    def apply(self, inputs: int) -> None:
        """Set torch's intra-op threads for a pass over ``inputs`` inputs (process-wide)."""
        if self.parallel_min_batch <= 0:
            return
        wanted = (self.threads or max(1, available_cores() - 1)) if inputs >= self.parallel_min_batch else 1
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)


class Embedder(Protocol):
    """What the index and the service need of an embedder, whatever its modality."""

    manifest: EmbedderManifest
    device: torch.device

    @property
    def modality(self) -> str: ...

    @property
    def dim(self) -> int: ...


class ImageEmbedder:
    """An image encoder of ours (index/architectures.py): (N, 3, H, W) float32 in, (N, D) L2-normalised float32
    out."""

    def __init__(self, module: torch.nn.Module, manifest: EmbedderManifest, device: torch.device) -> None:
        if manifest.image is None:
            raise BundleError("image embedder manifest has no 'image' preprocessing section")
        self.module = module
        self.manifest = manifest
        self.device = device

    @property
    def modality(self) -> str:
        return "image"

    @property
    def dim(self) -> int:
        return self.manifest.embedding_dim

    @torch.inference_mode()
    def embed_images(self, images: list[Image.Image], *, batch_size: int = 64) -> np.ndarray:
        """Embed decoded images; returns float32 array of shape (len(images), dim)."""
        assert self.manifest.image is not None
        out = np.zeros((len(images), self.dim), np.float32)
        for start in range(0, len(images), batch_size):
            batch = images_to_batch(images[start:start + batch_size], self.manifest.image)
            vectors = self.module(torch.from_numpy(batch).to(self.device))
            out[start:start + len(batch)] = torch.nn.functional.normalize(vectors.float(), dim=1).cpu().numpy()
        return out


class TextEmbedder:
    """A sentence-transformers folder: list of strings in, (N, D) L2-normalised float32 out, under the manifest's
    text policy (``text``: window length and what a longer text gets; without one, the model folder's own
    max_seq_length and truncation)."""

    def __init__(self, model: torch.nn.Module, manifest: EmbedderManifest, device: torch.device) -> None:
        self.model = model
        self.manifest = manifest
        self.device = device
        if manifest.text is not None:
            apply_policy(model, manifest.text)

    @property
    def modality(self) -> str:
        return "text"

    @property
    def dim(self) -> int:
        return self.manifest.embedding_dim

    @torch.inference_mode()
    def embed_texts(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed texts; returns float32 array of shape (len(texts), dim)."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        policy = self.manifest.text
        if policy is not None and policy.long_texts == "chunk":
            return embed_chunked(self.model, texts, policy=policy, batch_size=batch_size)
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_embedder(folder: Path, *, device: str = "auto") -> ImageEmbedder | TextEmbedder:
    """Load an embedder bundle written by ``training.export``; needs no training code and runs none from the
    bundle (see index/loaders.py). BundleError for a bundle that is malformed or could run code."""
    folder = Path(folder)
    manifest = read_embedder_manifest(folder)
    torch_device = resolve_device(device)
    weights = folder / manifest.weights_file
    if not weights.exists():
        raise BundleError(f"embedder bundle {folder} lacks its weights {manifest.weights_file}")
    logger.info("loading %s embedder from %s on %s", manifest.modality, folder, torch_device)
    if manifest.modality == "image":
        return ImageEmbedder(load_image_module(folder, manifest, torch_device), manifest, torch_device)
    return TextEmbedder(load_text_model(weights, torch_device), manifest, torch_device)
