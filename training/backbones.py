"""Image backbones for training: the architectures of ``index.architectures``, with pretrained weights.

``ImageEncoder`` = backbone -> global average pool -> linear projection to ``embedding_dim``.
Its output is *not* normalised; margin heads and the exported embedder normalise it.
The classes live in index/ so that loading an exported bundle needs no training code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from arcsearch.index.architectures import ImageEncoder, MobileNetV2, SmallCNN, build_image_architecture
from arcsearch.index.bundle import ImageArchitecture

__all__ = ["ImageEncoder", "MobileNetV2", "SmallCNN", "build_image_encoder", "load_mobilenet_v2"]


def load_mobilenet_v2(checkpoint: Path) -> MobileNetV2:
    """MobileNetV2 with ImageNet weights from torchvision's checkpoint (``strict=True``, no pickle)."""
    model = MobileNetV2()
    if str(checkpoint).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(checkpoint)
    else:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


def build_image_encoder(backbone: str, *, embedding_dim: int, checkpoint: Path | None = None) -> ImageEncoder:
    """``backbone`` is ``mobilenet_v2`` (needs ``checkpoint`` for pretrained weights) or ``small_cnn``."""
    if backbone not in ("mobilenet_v2", "small_cnn"):
        raise ValueError(f"unknown image backbone {backbone!r}; choose mobilenet_v2 or small_cnn")
    if backbone == "mobilenet_v2" and checkpoint is not None:
        return ImageEncoder(load_mobilenet_v2(checkpoint).features, MobileNetV2.feature_dim, embedding_dim)
    return build_image_architecture(ImageArchitecture(name=backbone, embedding_dim=embedding_dim))
