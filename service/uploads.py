"""Uploaded images: count, byte and pixel limits, admission, and decoding, with errors naming the file.

Memory is bounded, not left to grow with the load. An ``ImageGate`` (one per app) admits at most
``max_images_in_flight`` images at once over all requests (held from before their bytes are read until
the request is answered; one more gets 503 ``overloaded`` with ``Retry-After``) and decodes at most
``max_concurrent_decodes`` at once. Every image is checked from its header first (pixels per image and
per request: 413), then decoded reduced to about twice the encoder's input size (index.preprocess), so
only small images wait in the batch queue. The peak is about ``image_memory_bound_bytes(settings)`` above
what the service holds anyway.

``read_uploads`` runs on the event loop (the multipart parser has already spooled the parts; this only
reads and measures them); probing and decoding run in the thread pool. Errors carry the failing file's
position in the request (``details.index``, 0-based) and its filename.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, UploadFile
from PIL import Image
from starlette.concurrency import run_in_threadpool

from arcsearch.index.bundle import EmbedderManifest, ImagePreprocessing
from arcsearch.index.preprocess import (
    ALLOWED_IMAGE_FORMATS,
    DECODE_BYTES_PER_PIXEL,
    REDUCE_MARGIN,
    ImageDecodeError,
    ImageTooLargeError,
    decode_image,
    probe_image,
)
from arcsearch.service.errors import (
    ApiError,
    EmptyUploadError,
    OverloadedError,
    PayloadTooLargeError,
    UnsupportedMediaError,
    validation_error,
)
from arcsearch.service.settings import Settings

OBJECT_REPR = re.compile(r"\s*<[^>]* at 0x[0-9a-f]+>")
Size = tuple[int, int]  # (width, height) in pixels


@dataclass(frozen=True)
class Upload:
    """One uploaded file's bytes and the filename its part gave (``None`` if it gave none)."""

    filename: str | None
    data: bytes


def decode_reason(exc: ImageDecodeError) -> str:
    """The decoder's reason for a response, without object reprs (no memory addresses leak)."""
    return OBJECT_REPR.sub("", str(exc))


def image_error(exc: ImageDecodeError, what: str, details: dict[str, Any]) -> ApiError:
    """413 for an image with too many pixels, else 415; ``what`` names the file or field in the message."""
    if isinstance(exc, ImageTooLargeError):
        return PayloadTooLargeError(f"{what} has too many pixels", details={**details, "reason": decode_reason(exc)})
    return UnsupportedMediaError(f"{what} is not an image in an accepted format",
                                 details={**details, "reason": decode_reason(exc),
                                          "accepted_formats": sorted(ALLOWED_IMAGE_FORMATS)})


def base64_bytes(value: str, *, loc: tuple[str | int, ...], max_bytes: int) -> bytes:
    """The bytes of a base64 field at ``loc``: 413 past ``max_bytes`` (checked before decoding), 422 if invalid."""
    field = ".".join(str(part) for part in loc[1:])
    if len(value) // 4 * 3 - 2 > max_bytes:  # the shortest decoding of a string this long
        raise PayloadTooLargeError(f"{field} exceeds {max_bytes} bytes", details={"field": field,
                                                                                   "limit_bytes": max_bytes})
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise validation_error(loc, "not valid base64") from None
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"{field} exceeds {max_bytes} bytes", details={"field": field,
                                                                                   "limit_bytes": max_bytes})
    return data


async def read_uploads(files: Sequence[UploadFile], *, max_files: int, max_file_bytes: int,
                       max_total_bytes: int) -> list[Upload]:
    """The files' bytes, in order; 422 for too many or an empty file, 413 for one too large or too much in all."""
    if len(files) > max_files:
        raise validation_error(("body", "file"), f"at most {max_files} files per request, got {len(files)}",
                               error_type="too_long")
    uploads: list[Upload] = []
    total = 0
    for index, file in enumerate(files):
        where = {"index": index, "filename": file.filename}
        data = await file.read(max_file_bytes + 1)
        if len(data) > max_file_bytes:
            raise PayloadTooLargeError(f"file {index} exceeds {max_file_bytes} bytes",
                                       details={"limit_bytes": max_file_bytes, **where})
        if not data:
            raise EmptyUploadError(f"file {index} is empty", details=where)
        total += len(data)
        if total > max_total_bytes:
            raise PayloadTooLargeError(f"the {len(files)} files exceed {max_total_bytes} bytes together",
                                       details={"limit_bytes": max_total_bytes, **where})
        uploads.append(Upload(file.filename, data))
    return uploads


def check_pixels(uploads: Sequence[Upload], *, max_image_pixels: int, max_request_pixels: int) -> None:
    """From the headers alone (blocking, cheap): 415 for a file that is not an accepted image, 413 for one
    of more than ``max_image_pixels`` or files of more than ``max_request_pixels`` together."""
    total = 0
    for index, upload in enumerate(uploads):
        where = {"index": index, "filename": upload.filename}
        try:
            _, width, height = probe_image(upload.data)
            if width * height > max_image_pixels:
                raise ImageTooLargeError(f"image of {width}x{height} pixels exceeds {max_image_pixels} pixels")
        except ImageDecodeError as exc:
            raise image_error(exc, f"file {index}", {**where, "limit_pixels": max_image_pixels}) from exc
        total += width * height
        if total > max_request_pixels:
            raise PayloadTooLargeError(f"the {len(uploads)} images exceed {max_request_pixels} pixels together",
                                       details={"limit_pixels": max_request_pixels, **where})


def decode_upload(index: int, upload: Upload, *, max_pixels: int, target_px: Size,
                  keep_aspect: bool = False) -> Image.Image:
    """Decode one upload (blocking), reduced for ``target_px``; 413/415 naming the file."""
    try:
        return decode_image(upload.data, max_pixels=max_pixels, target_px=target_px, keep_aspect=keep_aspect)
    except ImageDecodeError as exc:
        raise image_error(exc, f"file {index}", {"index": index, "filename": upload.filename}) from exc


def encoder_px(manifest: EmbedderManifest) -> Size:
    """The (width, height) an image embedder resizes its inputs to."""
    image = manifest.image or ImagePreprocessing()
    return image.width, image.height


class ImageGate:
    """Admission and decoding of uploaded images for one app (see the module docstring)."""

    def __init__(self, *, max_images: int, max_decodes: int) -> None:
        self.max_images = max_images
        self.held = 0  # images admitted and not yet released (changed on the event loop only)
        self._decodes = asyncio.Semaphore(max_decodes)

    @contextlib.contextmanager
    def hold(self, count: int) -> Iterator[None]:
        """Admit ``count`` images for the block, or refuse at once with 503 ``overloaded``."""
        if self.held + count > self.max_images:
            raise OverloadedError(f"{self.held} images are being processed (at most {self.max_images}); "
                                  "retry shortly", details={"images_in_flight": self.held, "limit": self.max_images})
        self.held += count
        try:
            yield
        finally:
            self.held -= count

    async def read_and_decode(self, files: Sequence[UploadFile], settings: Settings, *, target_px: Size,
                              keep_aspect: bool = False) -> tuple[list[Image.Image], list[str | None]]:
        """The files decoded (reduced for ``target_px``, see ``decode_image``) and their filenames, in order;
        their bytes are dropped on return. Call inside ``hold(len(files))``."""
        uploads = await read_uploads(files, max_files=settings.max_batch_images,
                                     max_file_bytes=settings.max_upload_bytes,
                                     max_total_bytes=settings.max_image_request_bytes)
        await run_in_threadpool(check_pixels, uploads, max_image_pixels=settings.max_image_pixels,
                                max_request_pixels=settings.max_request_pixels)
        images = []
        for index, upload in enumerate(uploads):
            async with self._decodes:
                images.append(await run_in_threadpool(decode_upload, index, upload, target_px=target_px,
                                                      max_pixels=settings.max_image_pixels, keep_aspect=keep_aspect))
        return images, [upload.filename for upload in uploads]


async def image_gate(request: Request) -> ImageGate:
    """The app's ImageGate, made from its settings on first use (on the event loop: no race)."""
    state = request.app.state
    if getattr(state, "image_gate", None) is None:
        settings: Settings = state.settings
        state.image_gate = ImageGate(max_images=settings.max_images_in_flight,
                                     max_decodes=settings.max_concurrent_decodes)
    return state.image_gate


ImageGateDep = Annotated[ImageGate, Depends(image_gate)]


def image_memory_bound_bytes(settings: Settings, *, target_px: Size) -> int:
    """The most memory image searches take at once: images being decoded at full size, plus every admitted
    image's bytes and reduced copy (at most (2 x REDUCE_MARGIN x target)^2 pixels of 4 bytes each)."""
    decoding = settings.max_concurrent_decodes * settings.max_image_pixels * DECODE_BYTES_PER_PIXEL
    reduced_bytes = 4 * (2 * REDUCE_MARGIN) ** 2 * target_px[0] * target_px[1]
    return decoding + settings.max_images_in_flight * (settings.max_upload_bytes + reduced_bytes)
