"""Image decoding and preprocessing with Pillow and numpy (no torchvision).

``decode_image`` opens only the accepted formats (Pillow never tries another decoder), refuses images
of more than ``max_pixels`` before decoding them, and, given the size the encoder needs (``target_px``),
decodes no larger than about twice that: JPEG at a reduced scale (``Image.draft``), other formats reduced
by integer factors right after decoding (``Image.reduce``), so that only the reduced image is kept. The
encoder resizes to its input size regardless of the aspect ratio, so each side is reduced on its own
(less than 2 x REDUCE_MARGIN x the target side is left); ``keep_aspect`` reduces both sides alike.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from arcsearch.index.bundle import ImagePreprocessing

# Pillow's format ids, the only decoders Image.open may try; "PPM" also reads PGM and PBM files
PILLOW_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "PPM", "TIFF", "WEBP")
ALLOWED_IMAGE_FORMATS = frozenset({*PILLOW_FORMATS, "PGM"})  # the names users know
MAX_IMAGE_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # Pillow raises DecompressionBombError past 2x this
REDUCE_MARGIN = 2  # decode to at least this many times the encoder's input size, then resize as before
REDUCIBLE_MODES = frozenset({"L", "LA", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"})
# peak bytes per decoded pixel: a palette or 16-bit image (<= 2 B) converted to RGB (Pillow keeps 4 B)
DECODE_BYTES_PER_PIXEL = 6

Source = bytes | Path


class ImageDecodeError(ValueError):
    """The bytes are not an image we accept (unknown format, truncated, or too large)."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than allowed (checked from its header, before decoding)."""


def _open(data: Source) -> Image.Image:
    """Open (header only) with the accepted decoders only."""
    return Image.open(io.BytesIO(data) if isinstance(data, bytes) else data, formats=PILLOW_FORMATS)


def _check_size(img: Image.Image, max_pixels: int) -> None:
    if img.width * img.height > max_pixels:
        raise ImageTooLargeError(f"image of {img.width}x{img.height} pixels exceeds {max_pixels} pixels")


def probe_image(data: Source) -> tuple[str, int, int]:
    """(format, width, height) from the header, without decoding the pixels; raises ImageDecodeError."""
    try:
        with _open(data) as img:
            return str(img.format), img.width, img.height
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"not a readable image: {exc}") from exc


def _reduce(img: Image.Image, target_px: tuple[int, int], *, keep_aspect: bool) -> Image.Image:
    """``img`` (loaded) shrunk by the largest integer factors that keep it REDUCE_MARGIN x ``target_px``."""
    x = max(1, img.width // (REDUCE_MARGIN * target_px[0]))
    y = max(1, img.height // (REDUCE_MARGIN * target_px[1]))
    if keep_aspect:
        x = y = min(x, y)
    if max(x, y) < 2:
        return img
    if img.mode not in REDUCIBLE_MODES:
        img = img.convert("RGB")
    return img.reduce((x, y))


def decode_image(data: Source, *, max_pixels: int = MAX_IMAGE_PIXELS, target_px: tuple[int, int] | None = None,
                 keep_aspect: bool = False) -> Image.Image:
    """Decode image bytes or a file into an RGB ``PIL.Image``; raises ImageDecodeError on bad input and
    ImageTooLargeError past ``max_pixels``. ``target_px`` (width, height): the size the image is for; larger
    images come back reduced to no less than twice it (full size without it)."""
    try:
        with _open(data) as img:
            _check_size(img, max_pixels)
            if target_px is not None:
                img.draft(None, (REDUCE_MARGIN * target_px[0], REDUCE_MARGIN * target_px[1]))  # JPEG only
            img.load()
            reduced = _reduce(img, target_px, keep_aspect=keep_aspect) if target_px is not None else img
            return reduced.convert("RGB")
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
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
