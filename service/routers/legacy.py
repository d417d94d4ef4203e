"""The search routes of the previous release, kept one release as deprecated aliases of
``POST /v1/collections/{name}/search``: same bodies and answers as before (``results`` repeats the first
query's hits), marked ``deprecated`` in OpenAPI, and each answer carries ``Deprecation: true`` and a
``Link`` to the successor.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from arcsearch.service.auth import ReadAccess
from arcsearch.service.core.querying import SearchOptions
from arcsearch.service.deps import RegistryDep, SettingsDep
from arcsearch.service.routers.search import ERRORS, SEARCH_PATH, search_images_in, search_texts_in, to_schema
from arcsearch.service.schemas import (
    HARD_MAX_K,
    ImageQueryResults,
    ImageSearchResponse,
    QueryResults,
    TextSearchRequest,
    TextSearchResponse,
)
from arcsearch.service.search_schemas import ImageSearchForm
from arcsearch.service.uploads import ImageGateDep

router = APIRouter(prefix="/v1", tags=["search (deprecated)"], dependencies=[ReadAccess])


def mark_deprecated(response: Response, collection: str) -> None:
    """RFC 9745 ``Deprecation`` and an RFC 8288 ``Link`` to the route that replaces this one."""
    response.headers["Deprecation"] = "true"
    response.headers["Link"] = f'<{SEARCH_PATH.format(name=collection)}>; rel="successor-version"'


@router.post("/images/search", response_model=ImageSearchResponse, responses=ERRORS, deprecated=True,
             summary="Deprecated: use POST /v1/collections/{name}/search with multipart file parts")
async def search_images(
    registry: RegistryDep,
    settings: SettingsDep,
    gate: ImageGateDep,
    response: Response,
    files: Annotated[list[UploadFile], File(alias="file", description="the query image (JPEG, PNG, PGM, ...); "
                                            "repeat the field for a batch, answered in one forward pass")],
    k: Annotated[int, Form(ge=1, le=HARD_MAX_K, description="number of neighbours")] = 5,
    collection: Annotated[str | None, Form(max_length=64, description="default: the image collection")] = None,
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0, description="drop hits below this score")] = None,
    label: Annotated[str | None, Form(max_length=512, description="only items with this label")] = None,
) -> ImageSearchResponse:
    target = registry.resolve(collection, "image")
    form = ImageSearchForm(k=k, min_score=min_score, label=label)
    answer, filenames = await search_images_in(target, files, form, gate, settings)
    queries = [ImageQueryResults(filename=filename, results=to_schema(row))
               for filename, row in zip(filenames, answer.hits, strict=True)]
    mark_deprecated(response, target.name)
    return ImageSearchResponse(collection=target.name, version=answer.version, results=queries[0].results,
                               queries=queries)


@router.post("/texts/search", response_model=TextSearchResponse, responses=ERRORS, deprecated=True,
             summary="Deprecated: use POST /v1/collections/{name}/search with text or texts")
async def search_texts(body: TextSearchRequest, registry: RegistryDep, settings: SettingsDep,
                       response: Response) -> TextSearchResponse:
    texts = body.query_texts()
    target = registry.resolve(body.collection, "text")
    loc = ("body", "text") if body.text is not None else ("body", "texts")
    answer = await search_texts_in(target, texts, body.k, SearchOptions.of(body.min_score, body.filter), settings,
                                   loc=loc)
    queries = [QueryResults(text=text, results=to_schema(row)) for text, row in zip(texts, answer.hits, strict=True)]
    mark_deprecated(response, target.name)
    return TextSearchResponse(collection=target.name, version=answer.version, queries=queries,
                              results=queries[0].results if body.text is not None else None)
