"""The search page (``GET /``, static HTML + JS, no build step) and image thumbnails for its result cards."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from index.preprocess import ImageDecodeError, decode_image
from service.auth import ReadAccess
from service.deps import RegistryDep, SettingsDep
from service.errors import ItemNotFoundError
from service.schemas import CollectionName, ErrorResponse

router = APIRouter(tags=["page"])
PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"
THUMBNAIL_PX = 160


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


def image_file(data_root: Path, corpus: str, source: str) -> Path | None:
    """The indexed image's file, only if it still lies below the data root (no other file is ever read)."""
    if not corpus or not source or source == "inline":
        return None
    root = data_root.resolve()
    base = Path(corpus) if Path(corpus).is_absolute() else root / corpus
    try:
        path = (base / source).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return path if path.is_relative_to(root) and path.is_file() else None


@router.get("/v1/collections/{name}/thumbnails/{item_id:path}", dependencies=[ReadAccess],
            response_class=Response, summary="A PNG thumbnail of an indexed image (files under the data root only)",
            responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorResponse}})
def thumbnail(name: Annotated[CollectionName, PathParam()], item_id: Annotated[str, PathParam(max_length=512)],
              registry: RegistryDep, settings: SettingsDep) -> Response:
    store, _ = registry.get(name).live_store()
    record = store.get(item_id)
    path = image_file(settings.data_root, store.manifest.source, record.source) if record else None
    if path is None:
        raise ItemNotFoundError(f"no thumbnail for {item_id!r}: not an image file under the data root")
    try:
        image = decode_image(path)
    except ImageDecodeError as exc:
        raise ItemNotFoundError(f"no thumbnail for {item_id!r}: the file is no longer readable") from exc
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "max-age=300"})
