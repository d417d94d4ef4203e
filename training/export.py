"""Export of headless embedders into bundles that ``index.embedder.load_embedder`` reads.

Image: the encoder wrapped with L2 normalisation, saved with ``torch.export`` (dynamic batch size).
Text: the fine-tuned sentence-transformers model saved as a folder (config + safetensors).
The margin head is never exported.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from index.bundle import (
    EmbedderManifest,
    ImagePreprocessing,
    TextPreprocessing,
    library_versions,
    sha256_of_path,
    write_manifest,
)
from index.embedder import IMAGE_WEIGHTS_FILE, TEXT_WEIGHTS_DIR

MAX_EXPORT_BATCH = 4096


class NormalisedEncoder(nn.Module):
    """Wraps an encoder so that its (N, D) output is L2-normalised."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.encoder(x), dim=1)


def _fresh_folder(out_dir: Path) -> Path:
    """Write into ``<out_dir>.partial`` first; ``_publish`` renames it, so a crash leaves no half bundle."""
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def _publish(partial: Path, out_dir: Path) -> Path:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    return out_dir


def export_image_embedder(encoder: nn.Module, out_dir: Path, *, embedding_dim: int,
                          preprocessing: ImagePreprocessing, backbone: str,
                          training: dict[str, Any] | None = None,
                          metrics: dict[str, Any] | None = None) -> Path:
    """Export ``encoder`` ((N, 3, H, W) -> (N, embedding_dim)) as an image embedder bundle at ``out_dir``."""
    module = NormalisedEncoder(copy.deepcopy(encoder).cpu()).eval()
    example = torch.zeros(2, 3, preprocessing.height, preprocessing.width)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    partial = _fresh_folder(out_dir)
    torch.export.save(program, str(partial / IMAGE_WEIGHTS_FILE))
    manifest = EmbedderManifest(
        modality="image", embedding_dim=embedding_dim, weights_file=IMAGE_WEIGHTS_FILE,
        weights_sha256=sha256_of_path(partial / IMAGE_WEIGHTS_FILE), image=preprocessing,
        backbone=backbone, training=training or {}, metrics=metrics or {}, versions=library_versions())
    write_manifest(partial, manifest)
    return _publish(partial, out_dir)


def sentence_embedding_dim(model: nn.Module) -> int:
    """Output size of a SentenceTransformer (the method was renamed in sentence-transformers 6)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def export_text_embedder(model: nn.Module, out_dir: Path, *, backbone: str,
                         training: dict[str, Any] | None = None,
                         metrics: dict[str, Any] | None = None) -> Path:
    """Save a ``SentenceTransformer`` (no head) as a text embedder bundle at ``out_dir``."""
    partial = _fresh_folder(out_dir)
    model.save(str(partial / TEXT_WEIGHTS_DIR), safe_serialization=True)
    manifest = EmbedderManifest(
        modality="text", embedding_dim=sentence_embedding_dim(model),
        weights_file=TEXT_WEIGHTS_DIR, weights_sha256=sha256_of_path(partial / TEXT_WEIGHTS_DIR),
        text=TextPreprocessing(max_seq_length=int(model.max_seq_length)), backbone=backbone,
        training=training or {}, metrics=metrics or {}, versions=library_versions())
    write_manifest(partial, manifest)
    return _publish(partial, out_dir)
