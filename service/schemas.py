"""Request and response models. Hard caps live here; tighter limits come from Settings (checked in routes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from typing_extensions import TypeAliasType

from arcsearch.index.collections import Backend
from arcsearch.index.metadata import (
    INT64_MAX,
    INT64_MIN,
    MAX_ITEM_ID_CHARS,
    NUMBER_MAX,
    NUMBER_MIN,
    check_item_id,
    check_metadata,
    check_number,
    check_text,
)
from arcsearch.service.hit_schema import SearchHit  # noqa: F401 -- re-exported
from arcsearch.service.index_schemas import IndexBudgetFields, IndexFacts
from arcsearch.service.job_schemas import (  # noqa: F401 -- re-exported: routes and the client import models from here
    JobAccepted,
    JobFailure,
    JobList,
    JobProgress,
    JobState,
    JobStatus,
    LastReindex,
)
from arcsearch.service.legacy_schemas import (  # noqa: F401 -- re-exported: the client's result models
    ImageQueryResults,
    ImageSearchResponse,
    QueryResults,
    TextSearchResponse,
)

HARD_MAX_K = 1000
HARD_MAX_TEXT_CHARS = 100_000
HARD_MAX_BATCH_TEXTS = 1024
HARD_MAX_REINDEX_ITEMS = 1_000_000
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"  # index.metadata.CONTROL: refused in ids and in every path
ValidText = AfterValidator(check_text)  # no lone surrogates: every string a request may have stored or echoed
CollectionName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
# a character str.strip() keeps: a query of whitespace alone is refused (it is empty once stripped)
NOT_ONLY_SPACE_PATTERN = "[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
QueryText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=HARD_MAX_TEXT_CHARS,
                                             pattern=NOT_ONLY_SPACE_PATTERN), ValidText]
Label = Annotated[str, StringConstraints(max_length=512), ValidText]
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ITEM_ID_CHARS, pattern=NO_CONTROL_PATTERN),
                   AfterValidator(check_item_id),
                   Field(description="an item's external id: no control characters")]
# stated as exact integers (pydantic would write a float's bounds as floats, and float(2**63 - 1) is 2**63)
NUMBER_SCHEMA = {"type": "number", "minimum": NUMBER_MIN, "maximum": NUMBER_MAX}
BoundedNumber = Annotated[float, WithJsonSchema(NUMBER_SCHEMA)]
# what check_metadata accepts, as JSON Schema (recursive): numbers in the signed 64-bit range, any strings,
# arrays and objects; the limits across the whole value (depth, keys, bytes) are in the description
MetadataJson = TypeAliasType(  # type: ignore[misc]
    "MetadataJson", "None | bool | BoundedNumber | str | list[MetadataJson] | dict[str, MetadataJson]")
Metadata = Annotated[dict[str, Any], BeforeValidator(check_metadata, json_schema_input_type=dict[str, MetadataJson]),
                     Field(description="any JSON object of valid Unicode and numbers in the signed 64-bit range: "
                                       "at most 16 levels, 256 keys and 64 KiB of JSON")]
DataPath = Annotated[str, StringConstraints(min_length=1, max_length=4096), ValidText]


def exactly_one_of(*fields: str) -> dict[str, Any]:
    """The JSON Schema of "exactly one of ``fields`` is given, and not null" (a model validator enforces it):
    one ``oneOf`` branch per field, so generated clients and schema-driven testers know the rule."""
    return {"oneOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in fields]}


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. collection_not_found")
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The shape of every error response."""

    error: ErrorBody


MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
FilterNumber = Annotated[StrictFloat, BeforeValidator(check_number), WithJsonSchema(NUMBER_SCHEMA)]
MetadataValue = Label | StrictBool | Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)] | FilterNumber
# strict: a long string is refused, not read as a number; a number's bounds as stored metadata's


class SearchFilter(BaseModel):
    """Only items with this label and/or these metadata values (applied inside the search)."""

    model_config = ConfigDict(extra="forbid")

    label: Label | None = None
    metadata: dict[MetadataKey, MetadataValue] = Field(  # a key that does not match the pattern is refused too
        default_factory=dict, max_length=16, json_schema_extra={"additionalProperties": False})


def _whole_float_as_int(value: Any) -> Any:
    """JSON Schema counts 5.0 as an integer: so does the (strict) validation of ``k``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# the bounds before the validator: on the int itself, so the JSON Schema states them as minimum / maximum
Neighbours = Annotated[int, Field(ge=1, le=HARD_MAX_K, description="number of neighbours"),
                       BeforeValidator(_whole_float_as_int)]


class SearchOptionsMixin(BaseModel):
    model_config = ConfigDict(strict=True)  # JSON types as the schema states them: "5" is no number
    min_score: float | None = Field(None, ge=-1.0, le=1.0, description="drop hits with a lower cosine similarity")
    filter: SearchFilter | None = None


class TextSearchRequest(SearchOptionsMixin):
    """Give ``text`` for one query or ``texts`` for a batch (not both)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "a domestic animal", "k": 5, "collection": "texts"},
                     {"texts": ["a domestic animal", "a piece of furniture"], "k": 3}],
        **exactly_one_of("text", "texts")})

    text: QueryText | None = None
    texts: list[QueryText] | None = Field(None, min_length=1, max_length=HARD_MAX_BATCH_TEXTS)
    k: Neighbours = 5
    collection: CollectionName | None = Field(None, description="default: the first text collection")

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> TextSearchRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (one query) or 'texts' (a batch)")
        return self

    def query_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class ItemUpsert(BaseModel):
    """The item's content (``text`` for text collections, ``image_base64`` for image ones) and its fields."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of("text", "image_base64"))

    text: QueryText | None = None
    image_base64: str | None = Field(None, max_length=64 * 1024 * 1024)
    label: Label = ""
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_payload(self) -> ItemUpsert:
        if (self.text is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of 'text' or 'image_base64'")
        return self


class ItemResponse(BaseModel):
    collection: str
    id: str
    label: str = ""
    source: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class ItemPage(BaseModel):
    """One page of a collection's items, ordered by external id."""

    collection: str
    items: list[ItemResponse]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null after the last page")


class ItemChanged(BaseModel):
    collection: str
    id: str
    status: Literal["created", "replaced", "deleted"]
    size: int = Field(description="items in the collection now")
    index_supports_delete: bool = Field(description="false for HNSW: removed vectors stay as tombstones, "
                                                    "excluded from every search, until the next re-index")


class ReindexItem(BaseModel):
    """One item of an inline re-index: ``text`` for text collections, ``image_base64`` for image ones."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of("text", "image_base64"))

    id: ItemId
    text: QueryText | None = None
    image_base64: str | None = Field(None, description="an encoded image (JPEG, PNG, ...) in base64")
    label: Label = ""
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_payload(self) -> ReindexItem:
        if (self.text is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of 'text' or 'image_base64'")
        return self


class ReindexRequest(IndexBudgetFields):
    """Re-index from a file/folder under the data root (``source``) or from inline ``items``; not both;
    ``target_recall`` / ``max_memory`` choose the index by budget for this and later re-indexes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"collection": "texts", "source": "wordnet_glosses.jsonl"},
                     {"collection": "texts", "items": [{"id": "t1", "text": "a small dog", "label": "dog"}]}],
        **exactly_one_of("source", "items")})

    collection: CollectionName
    source: DataPath | None = None
    items: list[ReindexItem] | None = Field(None, min_length=1, max_length=HARD_MAX_REINDEX_ITEMS)
    workers: int | None = Field(None, ge=1, le=64, description="embedding processes for this job, at most "
                                "ARCSEARCH_REINDEX_WORKERS (default: that many)")

    @model_validator(mode="after")
    def _one_of_source_or_items(self) -> ReindexRequest:
        if (self.source is None) == (self.items is None):
            raise ValueError("give exactly one of 'source' (a path under the data root) or 'items'")
        return self


class CollectionSummary(BaseModel):
    name: str
    modality: Literal["image", "text"]
    status: Literal["loading", "ready", "empty", "error"]
    size: int = Field(0, description="number of indexed items")
    dim: int
    embedder_sha256: str
    embedder_origin: str = Field("", description="the embedder bundle the collection's copy was made from")
    index_type: str | None = Field(None, description="FAISS factory string of the live index (or of the first "
                                                     "one, for a collection not yet indexed)")
    version: str | None = None
    last_reindex: LastReindex | None = Field(None, description="the last finished re-index job; null if never")
    index: IndexFacts | None = Field(None, description="search parameters and measured recall of the live index")
    error: str | None = None


class CollectionCreate(IndexBudgetFields):
    """A new collection: its name, an embedder bundle folder under the data root, and a FAISS factory or a
    budget (``target_recall`` / ``max_memory``) its re-indexes choose the index by."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"name": "my-texts", "embedder": "embedders/text", "index_factory": "Flat"}]})

    name: CollectionName
    embedder: DataPath = Field(
        description="an embedder bundle folder (with manifest.json), relative to ARCSEARCH_DATA_ROOT")
    index_factory: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="FAISS factory string, e.g. 'Flat', 'HNSW32', 'IVF64,Flat' (trained by the first "
                          "re-index); default ARCSEARCH_INDEX_FACTORY")
    backend: Backend | None = Field(
        None, description="where its vectors live: 'faiss' (bundles in the collections folder, one server process) "
                          "or 'milvus' (the server's ARCSEARCH_MILVUS_URI; any number of server processes); default "
                          "ARCSEARCH_INDEX_BACKEND. The Milvus server is never taken from a request")


class CollectionsResponse(BaseModel):
    collections: list[CollectionSummary]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    collections: dict[str, str] | None = Field(None, description="collection name -> status; only for a "
                                               "request with a valid API key (or when no key is configured)")
