"""Items of a collection by external id: list, read, upsert, delete (no full rebuild)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query

from arcsearch.index.items import ItemRecord
from arcsearch.index.metadata import MAX_ITEM_ID_CHARS
from arcsearch.index.preprocess import ImageDecodeError, decode_image
from arcsearch.service.auth import AdminAccess, ReadAccess
from arcsearch.service.core.errors import ItemNotFoundError, WrongModalityError
from arcsearch.service.core.served import ServedCollection
from arcsearch.service.deps import RegistryDep, SettingsDep
from arcsearch.service.routers.search import check_text_length
from arcsearch.service.schemas import (
    NO_CONTROL_PATTERN,
    CollectionName,
    ErrorResponse,
    ItemChanged,
    ItemPage,
    ItemResponse,
    ItemUpsert,
)
from arcsearch.service.settings import Settings
from arcsearch.service.uploads import base64_bytes, encoder_px, image_error

router = APIRouter(prefix="/v1/collections", tags=["items"])
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)}
NamePath = Annotated[CollectionName, Path(description="collection name")]
ItemPath = Annotated[str, Path(min_length=1, max_length=MAX_ITEM_ID_CHARS, pattern=NO_CONTROL_PATTERN,
                               description="the item's external id")]
CURSOR_PREFIX = "a"  # a cursor is "a" + the hex of the UTF-8 of the last external id of the page before
CURSOR_PATTERN = r"^a(?:[0-9a-f]{2})+$"
MAX_CURSOR_CHARS = 1 + 8 * MAX_ITEM_ID_CHARS  # up to 4 UTF-8 bytes a character, 2 hex digits a byte
MAX_PAGE_ITEMS = 1000


def encode_cursor(last_id: str) -> str:
    """The opaque cursor that resumes a listing after the item ``last_id``."""
    return CURSOR_PREFIX + last_id.encode("utf-8").hex()


def decode_cursor(cursor: str) -> str:
    """The position a cursor resumes after. Any string of CURSOR_PATTERN (the query schema checks it) names
    one: bytes that are not UTF-8 decode with replacement characters, a position between two ids."""
    return bytes.fromhex(cursor[len(CURSOR_PREFIX):]).decode("utf-8", "replace")


def embed_item(target: ServedCollection, body: ItemUpsert, settings: Settings) -> np.ndarray:
    """The item's vector from its text or image; 400 for the wrong modality, 413/415/422 for a bad image or text."""
    if (body.text is not None) != (target.info.modality == "text"):
        wanted = "text" if target.info.modality == "text" else "image_base64"
        raise WrongModalityError(f"collection {target.name!r} holds {target.info.modality}s: give {wanted!r}")
    if body.text is not None:
        check_text_length(body.text, ("body", "text"), settings.max_text_chars)
        return target.embedder.embed_texts([body.text])[0]
    data = base64_bytes(body.image_base64 or "", loc=("body", "image_base64"), max_bytes=settings.max_upload_bytes)
    try:
        image = decode_image(data, max_pixels=settings.max_image_pixels,
                             target_px=encoder_px(target.embedder.manifest))
    except ImageDecodeError as exc:
        raise image_error(exc, "image_base64", {"field": "image_base64"}) from exc
    return target.embedder.embed_images([image])[0]


def item_response(name: str, record: ItemRecord) -> ItemResponse:
    return ItemResponse(collection=name, id=record.external_id, label=record.label, source=record.source,
                        metadata=record.metadata)


@router.get("/{name}/items", response_model=ItemPage, responses=ERRORS, dependencies=[ReadAccess],
            summary="A page of the collection's items, by external id; follow next_cursor for the rest")
def list_items(name: NamePath, registry: RegistryDep,
               cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, pattern=CURSOR_PATTERN,
                                                   description="a previous page's next_cursor")] = None,
               limit: Annotated[int, Query(ge=1, le=MAX_PAGE_ITEMS)] = 100) -> ItemPage:
    """Items come in external-id order and a cursor names the last id seen, so upserts and deletes between
    pages neither skip nor repeat an item present throughout (one added meanwhile may or may not appear)."""
    after = decode_cursor(cursor) if cursor else None
    store, _ = registry.get(name).live_store()
    records = store.page(after, limit + 1)  # one more tells whether another page follows
    page = [item_response(name, record) for record in records[:limit]]
    return ItemPage(collection=name, items=page,
                    next_cursor=encode_cursor(page[-1].id) if len(records) > limit else None)


@router.get("/{name}/items/{item_id:path}", response_model=ItemResponse, responses=ERRORS,
            dependencies=[ReadAccess], summary="An item's label, source and metadata")
def get_item(name: NamePath, item_id: ItemPath, registry: RegistryDep) -> ItemResponse:
    target = registry.get(name)
    store, _ = target.live_store()
    record = store.get(item_id)
    if record is None:
        raise ItemNotFoundError(f"no item {item_id!r} in collection {name!r}")
    return item_response(name, record)


@router.put("/{name}/items/{item_id:path}", response_model=ItemChanged, responses=ERRORS,
            dependencies=[AdminAccess], summary="Insert or replace one item (no rebuild; durable at once)")
def put_item(name: NamePath, item_id: ItemPath, body: ItemUpsert, registry: RegistryDep,
             settings: SettingsDep) -> ItemChanged:
    target = registry.get(name)
    store, _ = target.live_store()
    vector = embed_item(target, body, settings)
    source = "inline" if body.image_base64 is not None else ""
    metadata = {**body.metadata, "text": body.text} if body.text is not None else dict(body.metadata)
    replaced = target.upsert(ItemRecord(item_id, body.label, source, metadata), vector)
    return ItemChanged(collection=name, id=item_id, status="replaced" if replaced else "created",
                       size=len(target.live_store()[0]), index_supports_delete=store.supports_delete)


@router.delete("/{name}/items/{item_id:path}", response_model=ItemChanged, responses=ERRORS,
               dependencies=[AdminAccess], summary="Delete one item (no rebuild)")
def delete_item(name: NamePath, item_id: ItemPath, registry: RegistryDep) -> ItemChanged:
    target = registry.get(name)
    store, _ = target.live_store()
    if not target.delete(item_id):
        raise ItemNotFoundError(f"no item {item_id!r} in collection {name!r}")
    return ItemChanged(collection=name, id=item_id, status="deleted", size=len(target.live_store()[0]),
                       index_supports_delete=store.supports_delete)
