"""Image decoding and preprocessing with Pillow and numpy (no torchvision)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from index.bundle import ImagePreprocessing

ALLOWED_IMAGE_FORMATS = frozenset({"JPEG", "PNG", "PPM", "PGM", "BMP", "GIF", "TIFF", "WEBP"})
MAX_IMAGE_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # Pillow raises DecompressionBombError past 2x this


class ImageDecodeError(ValueError):
    """The bytes are not an image we accept (unknown format, truncated, or too large)."""


def decode_image(data: bytes | Path) -> Image.Image:
    """Decode image bytes or a file into an RGB ``PIL.Image``; raises ImageDecodeError on bad input."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            if img.format not in ALLOWED_IMAGE_FORMATS:
                raise ImageDecodeError(f"image format {img.format!r} is not allowed")
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ImageDecodeError(f"image of {img.width}x{img.height} pixels is too large")
            img.load()
            return img.convert("RGB")
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"not a readable image: {exc}") from exc


def image_to_array(img: Image.Image, params: ImagePreprocessing) -> np.ndarray:
    """Resize to (params.height, params.width) and normalise; returns float32 array of shape (3, H, W)."""
    resized = img.convert("RGB").resize((params.width, params.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0  # (H, W, 3) in [0, 1]
    normalised = (pixels - np.asarray(params.mean, np.float32)) / np.asarray(params.std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def images_to_batch(images: list[Image.Image], params: ImagePreprocessing) -> np.ndarray:
    """Stack preprocessed images into a float32 batch of shape (N, 3, H, W)."""
    if not images:
        return np.zeros((0, 3, params.height, params.width), np.float32)
    return np.stack([image_to_array(img, params) for img in images])
