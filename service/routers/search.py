"""Similarity search: an uploaded image, or one or more texts, against a collection.

Handlers are ``async``: they check the request on the event loop (cheap), decode an upload in the
thread pool, and await the collection's micro-batcher (service/batching.py), whose worker thread embeds
and searches the queries of many concurrent requests at once. A waiting request holds no thread, and
nothing blocking (decoding, torch, FAISS) runs on the event loop.
"""

from __future__ import annotations

import re
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from index.preprocess import ALLOWED_IMAGE_FORMATS, ImageDecodeError, decode_image
from index.store import Hit
from service.auth import ReadAccess
from service.deps import RegistryDep, SettingsDep
from service.errors import EmptyUploadError, PayloadTooLargeError, UnsupportedMediaError, validation_error
from service.querying import SearchOptions
from service.schemas import (
    HARD_MAX_K,
    ErrorResponse,
    ImageSearchResponse,
    QueryResults,
    SearchFilter,
    SearchHit,
    TextSearchRequest,
    TextSearchResponse,
)

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[ReadAccess])

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 415, 422, 503)}


def check_k(k: int, max_k: int) -> None:
    """422 if ``k`` exceeds the configured ``max_k`` (the schema enforces 1 <= k <= HARD_MAX_K)."""
    if k > max_k:
        raise validation_error(("body", "k"), f"Input should be less than or equal to {max_k}",
                               error_type="less_than_equal")


def to_schema(hits: list[Hit]) -> list[SearchHit]:
    return [SearchHit(id=h.external_id, score=h.score, label=h.label, source=h.source, metadata=h.metadata)
            for h in hits]


@router.post("/images/search", response_model=ImageSearchResponse, responses=ERRORS,
             summary="Find the images most similar to an uploaded image")
async def search_images(
    registry: RegistryDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="the query image (JPEG, PNG, PGM, ...)")],
    k: Annotated[int, Form(ge=1, le=HARD_MAX_K, description="number of neighbours")] = 5,
    collection: Annotated[str | None, Form(max_length=64, description="default: the image collection")] = None,
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0, description="drop hits below this score")] = None,
    label: Annotated[str | None, Form(max_length=512, description="only items with this label")] = None,
) -> ImageSearchResponse:
    check_k(k, settings.max_k)
    target = registry.resolve(collection, "image")
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLargeError(f"the upload exceeds {settings.max_upload_bytes} bytes",
                                   details={"limit_bytes": settings.max_upload_bytes})
    if not data:
        raise EmptyUploadError("the uploaded file is empty")
    started = time.perf_counter()
    try:
        image = await run_in_threadpool(decode_image, data)
    except ImageDecodeError as exc:
        reason = re.sub(r"\s*<[^>]* at 0x[0-9a-f]+>", "", str(exc))  # no object reprs in responses
        raise UnsupportedMediaError("the upload is not an image in an accepted format",
                                    details={"reason": reason,
                                             "accepted_formats": sorted(ALLOWED_IMAGE_FORMATS)}) from exc
    target.observe_stage("decode", time.perf_counter() - started)
    options = SearchOptions.of(min_score, SearchFilter(label=label) if label is not None else None)
    answer = await target.query_async([image], k, options)
    return ImageSearchResponse(collection=target.name, version=answer.version, results=to_schema(answer.hits[0]))


@router.post("/texts/search", response_model=TextSearchResponse, responses=ERRORS,
             summary="Find the texts most similar to one text, or to each text of a batch")
async def search_texts(body: TextSearchRequest, registry: RegistryDep, settings: SettingsDep) -> TextSearchResponse:
    check_k(body.k, settings.max_k)
    texts = body.query_texts()
    if len(texts) > settings.max_batch_texts:
        raise validation_error(("body", "texts"), f"at most {settings.max_batch_texts} texts per request",
                               error_type="too_long")
    for i, text in enumerate(texts):
        if len(text) > settings.max_text_chars:
            loc = ("body", "text") if body.text is not None else ("body", "texts", i)
            raise validation_error(loc, f"text of {len(text)} characters exceeds {settings.max_text_chars}",
                                   error_type="string_too_long")
    target = registry.resolve(body.collection, "text")
    answer = await target.query_async(texts, body.k, SearchOptions.of(body.min_score, body.filter))
    queries = [QueryResults(text=text, results=to_schema(row)) for text, row in zip(texts, answer.hits, strict=True)]
    return TextSearchResponse(collection=target.name, version=answer.version, queries=queries,
                              results=queries[0].results if body.text is not None else None)
