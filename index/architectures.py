"""Image encoder architectures, defined here so that loading a bundle instantiates only our own code.

An image embedder bundle stores a state dict (safetensors) and an ``ImageArchitecture`` in its manifest;
``build_image_architecture`` turns that description into an ``ImageEncoder`` (backbone features -> global
average pool -> linear projection), whose parameters ``load_state_dict(strict=True)`` then fills.
MobileNetV2 keeps torchvision's parameter names, so torchvision's ImageNet checkpoint loads into it.
training/backbones.py builds its encoders from these classes (service -> index <- training).
"""

from __future__ import annotations

import torch
from torch import nn

from arcsearch.index.bundle import ImageArchitecture

MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # (expand, channels, repeats, stride)


def conv_bn_relu(in_ch: int, out_ch: int, *, stride: int = 1, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU6, named 0/1/2 like torchvision's Conv2dNormActivation."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_ch * expand_ratio
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = [conv_bn_relu(in_ch, hidden, kernel=1)] if expand_ratio != 1 else []
        layers += [conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (width 1.0); ``features`` maps (N, 3, H, W) to (N, 1280, H/32, W/32)."""

    feature_dim = 1280

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu(3, 32, stride=2)]
        in_ch = 32
        for expand, out_ch, repeats, stride in MOBILENET_V2_SETTINGS:
            for i in range(repeats):
                layers.append(InvertedResidual(in_ch, out_ch, stride=stride if i == 0 else 1, expand_ratio=expand))
                in_ch = out_ch
        layers.append(conv_bn_relu(in_ch, self.feature_dim, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.feature_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(pooled)


class SmallCNN(nn.Module):
    """A small CNN trained from scratch: four conv stages, (N, 3, H, W) -> (N, 256, H/16, W/16)."""

    feature_dim = 256

    def __init__(self) -> None:
        super().__init__()
        widths = (3, 32, 64, 128, 256)
        self.features = nn.Sequential(*[
            nn.Sequential(conv_bn_relu(a, b), conv_bn_relu(b, b), nn.MaxPool2d(2))
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        ])


class ImageEncoder(nn.Module):
    """Backbone features -> global average pool -> BatchNorm-free linear projection to ``embedding_dim``."""

    def __init__(self, features: nn.Module, feature_dim: int, embedding_dim: int) -> None:
        super().__init__()
        self.features = features
        self.projection = nn.Linear(feature_dim, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float32 -> (N, embedding_dim) float32, unnormalised."""
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.projection(pooled)


def build_image_architecture(architecture: ImageArchitecture) -> ImageEncoder:
    """A freshly initialised ``ImageEncoder`` of the described architecture (weights still to load)."""
    backbone = MobileNetV2() if architecture.name == "mobilenet_v2" else SmallCNN()
    return ImageEncoder(backbone.features, backbone.feature_dim, architecture.embedding_dim)
