"""Response models of the deprecated search routes (``/v1/texts/search``, ``/v1/images/search``; one release
more): each query's hits under ``results``, the first query's also at the top. The Python client keeps them
as its result types (re-exported by arcsearch.service.schemas)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from arcsearch.service.hit_schema import SearchHit


class ImageQueryResults(BaseModel):
    filename: str | None = Field(None, description="the uploaded part's filename, as sent")
    results: list[SearchHit]


class ImageSearchResponse(BaseModel):
    """``queries`` holds one entry per uploaded file, in upload order; ``results`` repeats the first one's hits."""

    collection: str
    version: str | None = Field(None, description="the index version that answered")
    results: list[SearchHit]
    queries: list[ImageQueryResults]


class QueryResults(BaseModel):
    text: str
    results: list[SearchHit]


class TextSearchResponse(BaseModel):
    """``queries`` holds one entry per query text; ``results`` repeats the hits of a single ``text`` query
    (null for a batch)."""

    collection: str
    version: str | None = None
    results: list[SearchHit] | None = None
    queries: list[QueryResults]
