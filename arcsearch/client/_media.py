"""Query and item images as bytes: files read from disk, bytes as given, PIL images encoded as PNG."""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from PIL import Image

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image"
PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})
OCTET_STREAM = "application/octet-stream"


def _pil_image(value: Any) -> Any:
    """``value`` if it is a PIL image, else None (PIL is only looked at if the caller has imported it)."""
    module = sys.modules.get("PIL.Image")
    return value if module is not None and isinstance(value, module.Image) else None


def is_single_image(value: Any) -> bool:
    """True for one image input; False for a sequence of them."""
    return isinstance(value, str | os.PathLike | bytes | bytearray | memoryview) or _pil_image(value) is not None


def as_image_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """One image or a sequence of images, as a list."""
    return [images] if is_single_image(images) else list(images)  # type: ignore[arg-type]


def png_bytes(image: Image.Image) -> bytes:
    """The image as PNG bytes (modes PNG cannot hold, e.g. CMYK, converted to RGB first)."""
    if image.mode not in PNG_MODES:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_file(image: ImageInput, index: int) -> tuple[str, bytes, str]:
    """(filename, bytes, content type) of one image; a path is read here, on the client (OSError if it fails).

    Bytes are sent as they are, named ``image-<index>``; PIL images as ``image-<index>.png``.
    """
    if (pil := _pil_image(image)) is not None:
        return f"image-{index}.png", png_bytes(pil), "image/png"
    if isinstance(image, bytes | bytearray | memoryview):
        return f"image-{index}", bytes(image), OCTET_STREAM
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        return path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or OCTET_STREAM
    raise TypeError(f"image {index}: expected a path, bytes or a PIL image, got {type(image).__name__}")


def image_base64(image: ImageInput) -> str:
    """The image's bytes (see ``image_file``) in base64, for JSON bodies."""
    return base64.b64encode(image_file(image, 0)[1]).decode("ascii")
