"""Export of headless embedders into bundles that ``index.embedder.load_embedder`` reads.

Image: the encoder's state dict as ``model.safetensors`` plus its architecture (a name of
index/architectures.py and the embedding size) in the manifest; the loader normalises the output.
Text: the fine-tuned sentence-transformers model saved as a folder (config + safetensors only).
The margin head is never exported. Nothing exported is a pickle, so loading runs no code.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from arcsearch.index.architectures import build_image_architecture
from arcsearch.index.bundle import (
    EmbedderManifest,
    ImageArchitecture,
    ImagePreprocessing,
    TextPreprocessing,
    library_versions,
    sha256_of_path,
    write_manifest,
)
from arcsearch.index.loaders import IMAGE_WEIGHTS_FILE, TEXT_WEIGHTS_DIR, check_text_folder
from arcsearch.index.long_texts import stated_policy


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


def image_state_dict(encoder: nn.Module, architecture: ImageArchitecture) -> dict[str, torch.Tensor]:
    """``encoder``'s tensors (cpu, contiguous, unshared) once checked to load strictly into ``architecture``.

    Raises ValueError if the encoder is not that architecture (another backbone or embedding size).
    """
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in encoder.state_dict().items()}
    try:
        build_image_architecture(architecture).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the encoder does not fit architecture {architecture.name} "
                         f"({architecture.embedding_dim}-d): {exc}") from exc
    return state


def export_image_embedder(encoder: nn.Module, out_dir: Path, *, embedding_dim: int,
                          preprocessing: ImagePreprocessing, backbone: str,
                          training: dict[str, Any] | None = None,
                          metrics: dict[str, Any] | None = None) -> Path:
    """Export ``encoder`` ((N, 3, H, W) -> (N, embedding_dim)), an ``ImageEncoder`` with backbone ``backbone``
    (mobilenet_v2 or small_cnn), as an image embedder bundle at ``out_dir``."""
    from safetensors.torch import save_file

    architecture = ImageArchitecture(name=backbone, embedding_dim=embedding_dim)  # type: ignore[arg-type]
    state = image_state_dict(encoder, architecture)
    partial = _fresh_folder(out_dir)
    save_file(state, partial / IMAGE_WEIGHTS_FILE)
    manifest = EmbedderManifest(
        modality="image", embedding_dim=embedding_dim, weights_file=IMAGE_WEIGHTS_FILE,
        weights_sha256=sha256_of_path(partial / IMAGE_WEIGHTS_FILE), architecture=architecture,
        image=preprocessing, backbone=backbone, training=training or {}, metrics=metrics or {},
        versions=library_versions())
    write_manifest(partial, manifest)
    return _publish(partial, out_dir)


def sentence_embedding_dim(model: nn.Module) -> int:
    """Output size of a SentenceTransformer (the method was renamed in sentence-transformers 6)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def export_text_embedder(model: nn.Module, out_dir: Path, *, backbone: str,
                         training: dict[str, Any] | None = None,
                         metrics: dict[str, Any] | None = None,
                         text_policy: TextPreprocessing | None = None) -> Path:
    """Save a ``SentenceTransformer`` (no head) as a text embedder bundle at ``out_dir``, with ``text_policy``
    (default: truncate at the model's max_seq_length) in its manifest."""
    policy = stated_policy(model, text_policy or TextPreprocessing(max_seq_length=int(model.max_seq_length)))
    partial = _fresh_folder(out_dir)
    model.save(str(partial / TEXT_WEIGHTS_DIR), safe_serialization=True)
    check_text_folder(partial / TEXT_WEIGHTS_DIR)  # what the loader would refuse is never published
    manifest = EmbedderManifest(
        modality="text", embedding_dim=sentence_embedding_dim(model),
        weights_file=TEXT_WEIGHTS_DIR, weights_sha256=sha256_of_path(partial / TEXT_WEIGHTS_DIR),
        text=policy, backbone=backbone,
        training=training or {}, metrics=metrics or {}, versions=library_versions())
    write_manifest(partial, manifest)
    return _publish(partial, out_dir)
