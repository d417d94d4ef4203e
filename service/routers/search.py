"""Similarity search: one or more uploaded images, or one or more texts, against a collection.

Handlers are ``async``: they check the request on the event loop (cheap), admit and decode the uploads
(in the thread pool, a bounded number at once, reduced to what the encoder needs: service/uploads.py), and
await the collection's micro-batcher (service/core/batching.py), whose worker thread embeds and searches the
queries of many concurrent requests at once. A waiting request holds no thread, and nothing blocking
(decoding, torch, FAISS) runs on the event loop. Under more load than the limits allow, a request gets
503 ``overloaded`` with ``Retry-After`` instead of a place in an ever longer queue.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from arcsearch.index.hits import Hit
from arcsearch.service.auth import ReadAccess
from arcsearch.service.core.collection import LoadedCollection
from arcsearch.service.core.querying import SearchOptions
from arcsearch.service.deps import RegistryDep, SettingsDep
from arcsearch.service.errors import validation_error
from arcsearch.service.schemas import (
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
from arcsearch.service.settings import Settings
from arcsearch.service.uploads import ImageGateDep, encoder_px

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[ReadAccess])

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 415, 422, 503)}


def check_k(k: int, max_k: int) -> None:
    """422 if ``k`` exceeds the configured ``max_k`` (the schema enforces 1 <= k <= HARD_MAX_K)."""
    if k > max_k:
        raise validation_error(("body", "k"), f"Input should be less than or equal to {max_k}",
                               error_type="less_than_equal")


def check_text_length(text: str, loc: tuple[str | int, ...], max_chars: int) -> None:
    """422 at ``loc`` for a text longer than ``max_chars`` (the configured limit, tighter than the schema's)."""
    if len(text) > max_chars:
        raise validation_error(loc, f"text of {len(text)} characters exceeds {max_chars}", error_type="string_too_long")


def check_queue(target: LoadedCollection, inputs: int, settings: Settings) -> None:
    """503 if ``inputs`` more would overfill the collection's batch queue; call right before ``query_async``."""
    if target.batcher is not None:
        target.batcher.check_room(inputs, max_queued_inputs=settings.batch_max_queued_inputs)


def to_schema(hits: list[Hit]) -> list[SearchHit]:
    return [SearchHit(id=h.external_id, score=h.score, label=h.label, source=h.source, metadata=h.metadata)
            for h in hits]


@router.post("/images/search", response_model=ImageSearchResponse, responses=ERRORS,
             summary="Find the images most similar to each uploaded image (one or more `file` parts)")
async def search_images(
    registry: RegistryDep,
    settings: SettingsDep,
    gate: ImageGateDep,
    files: Annotated[list[UploadFile], File(alias="file", description="the query image (JPEG, PNG, PGM, ...); "
                                            "repeat the field for a batch, answered in one forward pass")],
    k: Annotated[int, Form(ge=1, le=HARD_MAX_K, description="number of neighbours")] = 5,
    collection: Annotated[str | None, Form(max_length=64, description="default: the image collection")] = None,
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0, description="drop hits below this score")] = None,
    label: Annotated[str | None, Form(max_length=512, description="only items with this label")] = None,
) -> ImageSearchResponse:
    check_k(k, settings.max_k)
    target = registry.resolve(collection, "image")
    check_queue(target, len(files), settings)  # refused before any decoding if the queue is full already
    # admitted (or 503) before the bytes are read; a batch being gathered waits for it while it is decoded
    with gate.hold(len(files)), target.arriving() as arrival:
        started = time.perf_counter()
        images, filenames = await gate.read_and_decode(files, settings, target_px=encoder_px(target.embedder.manifest))
        target.observe_stage("decode", time.perf_counter() - started)
        options = SearchOptions.of(min_score, SearchFilter(label=label) if label is not None else None)
        check_queue(target, len(images), settings)
        # one query: all images share one forward pass
        answer = await target.query_async(images, k, options, arrival=arrival)
    queries = [ImageQueryResults(filename=filename, results=to_schema(row))
               for filename, row in zip(filenames, answer.hits, strict=True)]
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
        check_text_length(text, ("body", "text") if body.text is not None else ("body", "texts", i),
                          settings.max_text_chars)
    target = registry.resolve(body.collection, "text")
    check_queue(target, len(texts), settings)
    answer = await target.query_async(texts, body.k, SearchOptions.of(body.min_score, body.filter))
    queries = [QueryResults(text=text, results=to_schema(row)) for text, row in zip(texts, answer.hits, strict=True)]
    return TextSearchResponse(collection=target.name, version=answer.version, queries=queries,
                              results=queries[0].results if body.text is not None else None)
