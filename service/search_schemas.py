"""Models of ``POST /v1/collections/{name}/search`` (re-exported by arcsearch.service.schemas).

One route, two bodies: JSON (``SearchRequest``: texts, vectors or item ids) or multipart/form-data
(``ImageSearchForm``: uploaded images). Each query's hits come once, in ``SearchResponse.queries``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arcsearch.service.schemas import (
    HARD_MAX_BATCH_TEXTS,
    ItemId,
    Neighbours,
    QueryText,
    SearchHit,
    SearchOptionsMixin,
    exactly_one_of,
)

FLOAT_BOUND = 1e15  # |each value| <= this: finite in float32, and so is the squared norm of 4096 of them
HARD_MAX_DIM = 4096
HARD_MAX_BATCH_VECTORS = 1024
HARD_MAX_BATCH_IMAGES = 1000  # the multipart parser takes at most 1000 files (settings.max_batch_images is tighter)
QueryKind = Literal["texts", "vectors", "item_ids"]


Vector = Annotated[
    list[Annotated[float, Field(ge=-FLOAT_BOUND, le=FLOAT_BOUND)]],
    Field(min_length=1, max_length=HARD_MAX_DIM, description="a raw vector of the collection's dimension (a zero "
                                                             "vector scores 0 against every item)")]


QUERY_FIELDS = ("text", "texts", "vector", "vectors", "item_id", "item_ids")


class SearchRequest(SearchOptionsMixin):
    """A search by exactly one of ``text``, ``texts``, ``vector``, ``vectors``, ``item_id`` or ``item_ids`` (an
    item searches for more like it, itself excluded); the answer's ``queries`` has one entry per input."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"texts": ["a domestic animal", "a piece of furniture"], "k": 3},
                     {"item_ids": ["s5/1.pgm"], "k": 5, "min_score": 0.3}],
        **exactly_one_of(*QUERY_FIELDS)})

    text: QueryText | None = None
    texts: list[QueryText] | None = Field(None, min_length=1, max_length=HARD_MAX_BATCH_TEXTS)
    vector: Vector | None = None
    vectors: list[Vector] | None = Field(None, min_length=1, max_length=HARD_MAX_BATCH_VECTORS)
    item_id: ItemId | None = None
    item_ids: list[ItemId] | None = Field(None, min_length=1, max_length=HARD_MAX_BATCH_VECTORS)
    k: Neighbours = 5

    @model_validator(mode="after")
    def _one_query_field(self) -> SearchRequest:
        if sum(getattr(self, name) is not None for name in QUERY_FIELDS) != 1:
            raise ValueError(f"give exactly one of {', '.join(repr(name) for name in QUERY_FIELDS)}")
        return self

    def kind(self) -> QueryKind:
        """What the inputs are: texts to embed, vectors, or ids of indexed items."""
        if self.text is not None or self.texts is not None:
            return "texts"
        return "vectors" if self.vector is not None or self.vectors is not None else "item_ids"

    def inputs(self) -> list[Any]:
        """The query inputs, in order (a single ``text`` / ``vector`` / ``item_id`` as a list of one)."""
        for name in QUERY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                return list(value) if name.endswith("s") else [value]
        return []

    def legacy_single(self) -> bool:
        """The request shape of the old vector / item search (``vector`` or ``item_id``): its answer also
        carries the deprecated ``results`` copy, for one release."""
        return self.vector is not None or self.item_id is not None


UPLOAD_FIELD = "file"


class ImageSearchForm(BaseModel):
    """The fields of a multipart image search beside the uploaded ``file`` parts (one or more)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(5, ge=1, le=1000, description="number of neighbours")
    min_score: float | None = Field(None, ge=-1.0, le=1.0, description="drop hits below this score")
    label: str | None = Field(None, max_length=512, description="only items with this label")


def upload_form_schema(max_files: int) -> dict[str, Any]:
    """The multipart body's JSON Schema: ``ImageSearchForm``'s fields plus the required ``file`` parts."""
    schema = ImageSearchForm.model_json_schema()
    schema["properties"] = {UPLOAD_FIELD: {
        "type": "array", "minItems": 1, "maxItems": max_files,
        "items": {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"},
        "description": "the query images (JPEG, PNG, PGM, ...), one part each; all answered in one forward pass"},
        **schema["properties"]}
    schema["required"] = [UPLOAD_FIELD]
    return schema


class QueryHits(BaseModel):
    """One query input and its hits, best first."""

    text: str | None = Field(None, description="the query text (text queries)")
    filename: str | None = Field(None, description="the uploaded part's filename, as sent (image queries)")
    item_id: str | None = Field(None, description="the item searched from (item queries; itself excluded)")
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    """One entry in ``queries`` per query input, in request order, each with its hits once."""

    collection: str
    version: str | None = Field(None, description="the index version that answered")
    queries: list[QueryHits]
    results: list[SearchHit] | None = Field(
        None, deprecated=True, exclude_if=lambda value: value is None,
        description="deprecated, for one release: only in answers to a single 'vector' or 'item_id' (the old "
                    "request shape), the hits of queries[0] again; read queries[0].hits")
