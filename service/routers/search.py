"""Similarity search: one or more uploaded images, or one or more texts, against a collection.

Handlers are ``async``: they check the request on the event loop (cheap), decode the uploads in the
thread pool (one hop per request, service/uploads.py), and await the collection's micro-batcher
(service/batching.py), whose worker thread embeds and searches the queries of many concurrent requests
at once. A waiting request holds no thread, and
nothing blocking (decoding, torch, FAISS) runs on the event loop.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from index.store import Hit
from service.auth import ReadAccess
from service.deps import RegistryDep, SettingsDep
from service.errors import validation_error
from service.querying import SearchOptions
from service.schemas import (
    HARD_MAX_K,
    ErrorResponse,
    ImageQueryResults,
    ImageSearchResponse,
    QueryResults,
    SearchFilter,
    SearchHit,
    TextSearchRequest,
    TextSearchResponse,
)
from service.uploads import decode_uploads, read_uploads

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
             summary="Find the images most similar to each uploaded image (one or more `file` parts)")
async def search_images(
    registry: RegistryDep,
    settings: SettingsDep,
    files: Annotated[list[UploadFile], File(alias="file", description="the query image (JPEG, PNG, PGM, ...); "
                                            "repeat the field for a batch, answered in one forward pass")],
    k: Annotated[int, Form(ge=1, le=HARD_MAX_K, description="number of neighbours")] = 5,
    collection: Annotated[str | None, Form(max_length=64, description="default: the image collection")] = None,
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0, description="drop hits below this score")] = None,
    label: Annotated[str | None, Form(max_length=512, description="only items with this label")] = None,
) -> ImageSearchResponse:
    check_k(k, settings.max_k)
    target = registry.resolve(collection, "image")
    with target.arriving() as arrival:  # a batch being gathered waits for this query while it is decoded
        uploads = await read_uploads(files, max_files=settings.max_batch_images,
                                     max_file_bytes=settings.max_upload_bytes,
                                     max_total_bytes=settings.max_image_request_bytes)
        started = time.perf_counter()
        images = await run_in_threadpool(decode_uploads, uploads)
        target.observe_stage("decode", time.perf_counter() - started)
        options = SearchOptions.of(min_score, SearchFilter(label=label) if label is not None else None)
        # one query: all images share one forward pass
        answer = await target.query_async(images, k, options, arrival=arrival)
    queries = [ImageQueryResults(filename=upload.filename, results=to_schema(row))
               for upload, row in zip(uploads, answer.hits, strict=True)]
    return ImageSearchResponse(collection=target.name, version=answer.version, results=queries[0].results,
                               queries=queries)


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
