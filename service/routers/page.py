"""The search page (``GET /``, static HTML + JS, no build step), image thumbnails for its result cards, and
PNG previews of uploads a browser cannot show itself (PGM, PPM, TIFF).

An index records its corpus folder in its manifest (``source``): an absolute path (``arcsearch index`` and
``arcsearch demo``), or a path relative to the data root (re-index over HTTP); indexes built before
corpus paths were made absolute may hold a path relative to the folder they were built from. A corpus that is
a manifest file names its images relative to the manifest's folder. Thumbnails
accept all three, and never read a file that does not lie below the data root.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool

from arcsearch.index.preprocess import ImageDecodeError, decode_image
from arcsearch.service.auth import ReadAccess
from arcsearch.service.core.errors import ItemNotFoundError
from arcsearch.service.deps import RegistryDep, SettingsDep
from arcsearch.service.schemas import NO_CONTROL_PATTERN, CollectionName, ErrorResponse
from arcsearch.service.uploads import ImageGateDep

router = APIRouter(tags=["page"])
PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"
THUMBNAIL_PX = 160
PREVIEW_PX = 256
PNG_RESPONSE = {200: {"content": {"image/png": {}}}}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


def corpus_folders(root: Path, corpus: str) -> list[Path]:
    """Where a manifest's corpus may be: itself if absolute, else below the (resolved) data ``root``, else
    below the working folder (indexes from before corpus paths were recorded absolute)."""
    path = Path(corpus)
    return [path] if path.is_absolute() else [root / path, Path.cwd() / path]


def image_file(data_root: Path, corpus: str, source: str) -> Path | None:
    """The indexed image's file, only if it still lies below the data root (no other file is ever read)."""
    if not corpus or not source or source == "inline":
        return None
    root = data_root.resolve()
    for folder in corpus_folders(root, corpus):
        folder = folder.parent if folder.is_file() else folder  # a manifest's paths are below its folder
        try:
            path = (folder / source).resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if path.is_relative_to(root) and path.is_file():
            return path
    return None


def png_of(image: Image.Image, size_px: int) -> bytes:
    """``image`` shrunk to fit a ``size_px`` square (never enlarged), as PNG bytes."""
    image.thumbnail((size_px, size_px))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@router.get("/v1/collections/{name}/thumbnails/{item_id:path}", dependencies=[ReadAccess],
            response_class=Response, summary="A PNG thumbnail of an indexed image (files under the data root only)",
            responses={**PNG_RESPONSE, 404: {"model": ErrorResponse}})
def thumbnail(name: Annotated[CollectionName, PathParam()],
              item_id: Annotated[str, PathParam(max_length=512, pattern=NO_CONTROL_PATTERN)],
              registry: RegistryDep, settings: SettingsDep) -> Response:
    store, _ = registry.get(name).live_store()
    record = store.get(item_id)
    path = image_file(settings.data_root, store.source, record.source) if record else None
    if path is None:
        raise ItemNotFoundError(f"no thumbnail for {item_id!r}: not an image file under the data root")
    try:
        image = decode_image(path, max_pixels=settings.max_image_pixels, target_px=(THUMBNAIL_PX, THUMBNAIL_PX),
                             keep_aspect=True)
    except ImageDecodeError as exc:
        raise ItemNotFoundError(f"no thumbnail for {item_id!r}: the file is no longer readable") from exc
    # private: with auth on, a thumbnail needs a key, so no shared cache may keep it
    return Response(png_of(image, THUMBNAIL_PX), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=300"})


@router.post("/v1/images/preview", dependencies=[ReadAccess], response_class=Response,
             summary="A PNG preview of one uploaded image (for formats browsers do not show, e.g. PGM)",
             responses={**PNG_RESPONSE, **{s: {"model": ErrorResponse} for s in (401, 413, 415, 422, 503)}})
async def preview(file: Annotated[UploadFile, File(description="an image in an accepted format")],
                  settings: SettingsDep, gate: ImageGateDep) -> Response:
    with gate.hold(1):  # the limits and the admission of image search
        images, _ = await gate.read_and_decode([file], settings, target_px=(PREVIEW_PX, PREVIEW_PX),
                                               keep_aspect=True)
        data = await run_in_threadpool(png_of, images[0], PREVIEW_PX)
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})
