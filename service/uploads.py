"""The image files of one search request: count and byte limits, then decoding, with errors naming the file.

``read_uploads`` runs on the event loop (the multipart parser has already spooled the parts; this only
reads and measures them); ``decode_uploads`` is blocking and belongs in the thread pool. Errors carry
the failing file's position in the request (``details.index``, 0-based) and its filename.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import UploadFile
from PIL import Image

from index.preprocess import ALLOWED_IMAGE_FORMATS, ImageDecodeError, decode_image
from service.errors import EmptyUploadError, PayloadTooLargeError, UnsupportedMediaError, validation_error

OBJECT_REPR = re.compile(r"\s*<[^>]* at 0x[0-9a-f]+>")


@dataclass(frozen=True)
class Upload:
    """One uploaded file's bytes and the filename its part gave (``None`` if it gave none)."""

    filename: str | None
    data: bytes


def decode_reason(exc: ImageDecodeError) -> str:
    """The decoder's reason for a response, without object reprs (no memory addresses leak)."""
    return OBJECT_REPR.sub("", str(exc))


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


def decode_uploads(uploads: Sequence[Upload]) -> list[Image.Image]:
    """Decode every upload in order (blocking); 415 naming the first file that is not an accepted image."""
    images = []
    for index, upload in enumerate(uploads):
        try:
            images.append(decode_image(upload.data))
        except ImageDecodeError as exc:
            raise UnsupportedMediaError(
                f"file {index} is not an image in an accepted format",
                details={"index": index, "filename": upload.filename, "reason": decode_reason(exc),
                         "accepted_formats": sorted(ALLOWED_IMAGE_FORMATS)}) from exc
    return images
