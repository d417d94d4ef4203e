"""Similarity search of one collection: ``POST /v1/collections/{name}/search`` with a JSON body (texts, vectors
or item ids) or a multipart body (uploaded images); each query's hits come once, in ``queries``.

Handlers are ``async``: they check the request on the event loop (cheap), admit and decode the uploads
(in the thread pool, a bounded number at once, reduced to what the encoder needs: service/uploads.py), and
await the collection's micro-batcher (service/core/batching.py), whose worker thread embeds and searches the
queries of many concurrent requests at once. A waiting request holds no thread, and nothing blocking
(decoding, torch, FAISS) runs on the event loop. Under more load than the limits allow, a request gets
503 ``overloaded`` with ``Retry-After`` instead of a place in an ever longer queue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from arcsearch.index.hits import Hit
from arcsearch.service.auth import ReadAccess
from arcsearch.service.core.querying import QueryAnswer, SearchOptions
from arcsearch.service.core.served import ServedCollection
from arcsearch.service.deps import RegistryDep, SettingsDep
from arcsearch.service.errors import (
    ItemNotFoundError,
    UnsupportedMediaError,
    WrongDimensionError,
    WrongModalityError,
    validation_error,
)
from arcsearch.service.schemas import CollectionName, ErrorResponse, SearchFilter, SearchHit
from arcsearch.service.search_schemas import (
    HARD_MAX_BATCH_IMAGES,
    UPLOAD_FIELD,
    ImageSearchForm,
    QueryHits,
    SearchRequest,
    SearchResponse,
)
from arcsearch.service.settings import Settings
from arcsearch.service.uploads import ImageGate, ImageGateDep, encoder_px

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[ReadAccess])

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 404, 409, 413, 415, 422, 503)}
SEARCH_PATH = "/v1/collections/{name}/search"
UPLOAD_SCHEMA = "ImageSearchUpload"  # the multipart body's schema in OpenAPI components (service.openapi)
JSON_MEDIA, FORM_MEDIA = "application/json", "multipart/form-data"
HOW_TO_QUERY = {"image": f"send the images as {FORM_MEDIA} '{UPLOAD_FIELD}' parts, or JSON vectors or item ids",
                "text": f"send {JSON_MEDIA} with 'text' or 'texts' (or vectors or item ids)"}
REQUEST_BODY = {"required": True, "content": {
    JSON_MEDIA: {"schema": {"$ref": f"#/components/schemas/{SearchRequest.__name__}"}},
    FORM_MEDIA: {"schema": {"$ref": f"#/components/schemas/{UPLOAD_SCHEMA}"}}}}


def check_k(k: int, max_k: int) -> None:
    """422 if ``k`` exceeds the configured ``max_k`` (the schema enforces 1 <= k <= HARD_MAX_K)."""
    if k > max_k:
        raise validation_error(("body", "k"), f"Input should be less than or equal to {max_k}",
                               error_type="less_than_equal")


def check_text_length(text: str, loc: tuple[str | int, ...], max_chars: int) -> None:
    """422 at ``loc`` for a text longer than ``max_chars`` (the configured limit, tighter than the schema's)."""
    if len(text) > max_chars:
        raise validation_error(loc, f"text of {len(text)} characters exceeds {max_chars}", error_type="string_too_long")


def check_queue(target: ServedCollection, inputs: int, settings: Settings) -> None:
    """503 if ``inputs`` more would overfill the collection's batch queue; call right before ``query_async``."""
    if target.batcher is not None:
        target.batcher.check_room(inputs, max_queued_inputs=settings.batch_max_queued_inputs)


def to_schema(hits: list[Hit]) -> list[SearchHit]:
    return [SearchHit(id=h.external_id, score=h.score, label=h.label, source=h.source, metadata=h.metadata)
            for h in hits]




def parsed(model: type[BaseModel], data: Any, *, json: bool = False) -> Any:
    """``data`` validated as ``model`` (from JSON bytes if ``json``); 422 with the body's locations if invalid."""
    try:
        return model.model_validate_json(data) if json else model.model_validate(data)
    except ValidationError as exc:
        raise validation_error_of(exc) from None


def validation_error_of(exc: ValidationError) -> RequestValidationError:
    """A model's validation error as the request's, its locations under ``body``."""
    return RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in exc.errors()])


def check_modality(target: ServedCollection, modality: str) -> None:
    """400 ``wrong_modality`` for a text query to an image collection, or an image query to a text one."""
    if target.info.modality != modality:
        how = HOW_TO_QUERY[target.info.modality]
        raise WrongModalityError(f"collection {target.name!r} holds {target.info.modality}s, not {modality}s; {how}")


async def search_texts_in(target: ServedCollection, texts: list[str], k: int, options: SearchOptions,
                          settings: Settings, *, loc: tuple[str, ...] = ("body", "texts")) -> QueryAnswer:
    """Embed and search ``texts`` (one micro-batched query); 422 past the configured limits."""
    check_modality(target, "text")
    check_k(k, settings.max_k)
    if len(texts) > settings.max_batch_texts:
        raise validation_error(loc, f"at most {settings.max_batch_texts} texts per request", error_type="too_long")
    for i, text in enumerate(texts):
        check_text_length(text, loc if loc[-1] == "text" else (*loc, i), settings.max_text_chars)
    check_queue(target, len(texts), settings)
    return await target.query_async(texts, k, options)


async def search_images_in(target: ServedCollection, files: Sequence[UploadFile], form: ImageSearchForm,
                           gate: ImageGate, settings: Settings) -> tuple[QueryAnswer, list[str | None]]:
    """Admit, decode, embed and search uploaded images (one forward pass); their hits and filenames."""
    check_modality(target, "image")
    check_k(form.k, settings.max_k)
    check_queue(target, len(files), settings)  # refused before any decoding if the queue is full already
    # admitted (or 503) before the bytes are read; a batch being gathered waits for it while it is decoded
    with gate.hold(len(files)), target.arriving() as arrival:
        started = time.perf_counter()
        images, filenames = await gate.read_and_decode(files, settings, target_px=encoder_px(target.embedder.manifest))
        target.observe_stage("decode", time.perf_counter() - started)
        options = SearchOptions.of(form.min_score, SearchFilter(label=form.label) if form.label is not None else None)
        check_queue(target, len(images), settings)
        return await target.query_async(images, form.k, options, arrival=arrival), filenames


def query_vector(target: ServedCollection, values: list[float], loc: tuple[str | int, ...]) -> np.ndarray:
    """One vector as float32; 400 ``wrong_dimension`` if it is not of the collection's dimension."""
    vector = np.asarray(values, np.float32)
    if len(vector) != target.embedder.dim:
        raise WrongDimensionError(f"{'.'.join(map(str, loc[1:]))} has {len(vector)} values; collection "
                                  f"{target.name!r} holds {target.embedder.dim}-d vectors",
                                  details={"dim": target.embedder.dim, "given": len(vector)})
    return vector


async def search_vectors_in(target: ServedCollection, body: SearchRequest, settings: Settings) -> QueryAnswer:
    """Search raw vectors (with the vector queries waiting beside them: core.querying.VectorQueue), or indexed
    items by id (in the thread pool: each excludes itself)."""
    check_k(body.k, settings.max_k)
    if body.kind() == "item_ids":
        return await run_in_threadpool(search_items_in, target, body)
    single = body.vector is not None
    rows = np.stack([query_vector(target, values, ("body", "vector") if single else ("body", "vectors", i))
                     for i, values in enumerate(body.inputs())])
    options = SearchOptions.of(body.min_score, body.filter)
    if target.vector_queue is None:
        return await run_in_threadpool(target.query_vectors, rows, body.k, options)
    return await target.vector_queue.query(rows, body.k, options)


def search_items_in(target: ServedCollection, body: SearchRequest) -> QueryAnswer:
    """Search for more like each of the indexed items ``body.inputs()``, each excluding itself."""
    store, _ = target.live_store()
    hits: list[list[Hit]] = []
    version = None
    for item_id in body.inputs():
        vector = store.vector_of(item_id)
        if vector is None:
            raise ItemNotFoundError(f"no item {item_id!r} in collection {target.name!r}")
        answer = target.query_vectors(vector[None, :], body.k, SearchOptions.of(body.min_score, body.filter,
                                                                                (item_id,)))
        hits.append(answer.hits[0])
        version = answer.version
    return QueryAnswer(version, hits)


async def read_upload_form(request: Request) -> tuple[list[UploadFile], ImageSearchForm]:
    """The ``file`` parts and the other fields of a multipart search (422 if missing or invalid). The form's
    files stay open until the request ends (Starlette closes them)."""
    form = await request.form(max_files=HARD_MAX_BATCH_IMAGES)
    files = form.getlist(UPLOAD_FIELD)
    if not files:
        raise validation_error(("body", UPLOAD_FIELD), "Field required", error_type="missing")
    for i, part in enumerate(files):
        if not isinstance(part, StarletteUpload):
            raise validation_error(("body", UPLOAD_FIELD, i), "Expected an uploaded file", error_type="value_error")
    fields = {key: value for key, value in form.multi_items() if key != UPLOAD_FIELD}
    return files, parsed(ImageSearchForm, fields)  # type: ignore[arg-type]


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@router.post("/collections/{name}/search", response_model=SearchResponse, responses=ERRORS,
             openapi_extra={"requestBody": REQUEST_BODY},
             summary="Search a collection by texts, vectors or item ids (JSON), or by uploaded images (multipart)")
async def search_collection(name: Annotated[CollectionName, Path(description="collection name")], request: Request,
                            registry: RegistryDep, settings: SettingsDep, gate: ImageGateDep) -> SearchResponse:
    """JSON: exactly one of ``text``/``texts`` (text collections), ``vector``/``vectors`` or ``item_id``/
    ``item_ids`` (any collection), with ``k``, ``min_score`` and ``filter``. Multipart: one or more ``file``
    parts (image collections), with ``k``, ``min_score`` and ``label`` fields. One ``queries`` entry per input."""
    media = media_type(request)
    if media == FORM_MEDIA:
        target = registry.get(name)
        files, form = await read_upload_form(request)
        answer, filenames = await search_images_in(target, files, form, gate, settings)
        queries = [QueryHits(filename=filename, hits=to_schema(row))
                   for filename, row in zip(filenames, answer.hits, strict=True)]
        return SearchResponse(collection=target.name, version=answer.version, queries=queries)
    if media != JSON_MEDIA and not media.endswith("+json"):
        raise UnsupportedMediaError(f"send {JSON_MEDIA} (texts, vectors, item ids) or {FORM_MEDIA} (images), "
                                    f"not {media or 'no content type'!r}")
    body: SearchRequest = parsed(SearchRequest, await request.body(), json=True)
    target = registry.get(name)
    if body.kind() == "texts":
        texts = body.inputs()
        loc = ("body", "text") if body.text is not None else ("body", "texts")
        answer = await search_texts_in(target, texts, body.k, SearchOptions.of(body.min_score, body.filter),
                                       settings, loc=loc)
        queries = [QueryHits(text=text, hits=to_schema(row)) for text, row in zip(texts, answer.hits, strict=True)]
    else:
        answer = await search_vectors_in(target, body, settings)
        ids = body.inputs() if body.kind() == "item_ids" else [None] * len(answer.hits)
        queries = [QueryHits(item_id=item_id, hits=to_schema(row)) for item_id, row in zip(ids, answer.hits,
                                                                                          strict=True)]
    return SearchResponse(collection=target.name, version=answer.version, queries=queries,
                          results=queries[0].hits if body.legacy_single() else None)
