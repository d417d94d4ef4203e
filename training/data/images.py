"""Training images: light augmentation on the fly with Pillow and numpy (``streaming`` decodes them)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance

from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.index.preprocess import image_to_array, images_to_batch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augmentation:
    """Random resized crop (area fraction and aspect range), horizontal flip, brightness jitter."""

    crop_area: tuple[float, float] = (0.75, 1.0)
    crop_aspect: tuple[float, float] = (0.85, 1.15)
    flip_probability: float = 0.5
    brightness: float = 0.2  # factor drawn from [1 - brightness, 1 + brightness]


def random_crop_box(width: int, height: int, aug: Augmentation,
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A (left, top, right, bottom) box covering a random area fraction and aspect ratio of the image."""
    area = rng.uniform(*aug.crop_area) * width * height
    aspect = np.exp(rng.uniform(np.log(aug.crop_aspect[0]), np.log(aug.crop_aspect[1])))
    crop_w = int(round(min(width, np.sqrt(area * aspect))))
    crop_h = int(round(min(height, np.sqrt(area / aspect))))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    return left, top, left + crop_w, top + crop_h


def augment(img: Image.Image, aug: Augmentation, rng: np.random.Generator) -> Image.Image:
    """One random view of ``img``; the size is left to ``image_to_array``."""
    view = img.crop(random_crop_box(img.width, img.height, aug, rng))
    if rng.random() < aug.flip_probability:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if aug.brightness > 0:
        view = ImageEnhance.Brightness(view).enhance(rng.uniform(1 - aug.brightness, 1 + aug.brightness))
    return view


def image_batch(images: Sequence[Image.Image], params: ImagePreprocessing, *,
                aug: Augmentation | None = None, rng: np.random.Generator | None = None) -> torch.Tensor:
    """(N, 3, H, W) float32 tensor; augmented when ``aug`` is given (then ``rng`` is required)."""
    if aug is None:
        return torch.from_numpy(images_to_batch(list(images), params))
    if rng is None:
        raise ValueError("augmentation needs a random generator")
    return torch.from_numpy(np.stack([image_to_array(augment(img, aug, rng), params) for img in images]))
