"""Every operation as a ``Call``: the HTTP request to send and how to read its answer.

``Client`` and ``AsyncClient`` only send calls, so the routes, bodies and result types live here
once. Arguments are passed through for the server to check (it answers 422 with details); only
images are turned into bytes here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from arcsearch.client._errors import InvalidResponse, error_from_response
from arcsearch.client._media import ImageInput, as_image_list, image_base64, image_file
from arcsearch.service.schemas import (
    CollectionsResponse,
    CollectionSummary,
    HealthResponse,
    ImageQueryResults,
    ItemChanged,
    ItemPage,
    ItemResponse,
    JobAccepted,
    JobList,
    JobStatus,
    QueryResults,
    ReadyResponse,
    ReindexItem,
    SearchFilter,
    SearchHit,
)
from arcsearch.service.search_schemas import QueryHits, SearchResponse

T = TypeVar("T")
FilterInput: TypeAlias = SearchFilter | Mapping[str, Any] | None
ItemInput: TypeAlias = ReindexItem | Mapping[str, Any]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request (``json`` body, or multipart ``data`` + ``files``) and ``parse``, which turns the
    decoded JSON of a success answer (None for 204) into the typed result."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = field(default=None, repr=False)

    def request(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.request``."""
        return {"method": self.method, "url": self.path, "params": self.params, "json": self.json, "data": self.data,
                "files": self.files}

    def result(self, response: httpx.Response) -> T:
        """The typed result of a success answer; raises the ``ApiError`` of an error answer."""
        if response.is_error:
            raise error_from_response(response)
        try:
            return self.parse(response.json() if response.content else None)
        except ValueError as exc:  # not JSON, or JSON of another shape (pydantic's error is a ValueError)
            raise InvalidResponse(f"{self.method} {self.path} answered {response.status_code} with an unexpected "
                                  f"body: {exc}", code="invalid_response", status=response.status_code,
                                  request_id=response.headers.get("X-Request-ID")) from exc


def segment(value: str) -> str:
    """``value`` as one URL path segment: every reserved character escaped, ``.``/``..`` too."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in {".", ".."} else quoted


def _options(*, k: int, min_score: float | None, filter: FilterInput) -> dict[str, Any]:
    body: dict[str, Any] = {"k": k}
    if min_score is not None:
        body["min_score"] = min_score
    if filter is not None:
        body["filter"] = filter.model_dump(exclude_defaults=True) if isinstance(filter, BaseModel) else dict(filter)
    return body


def _queries(data: Any) -> list[QueryHits]:
    return SearchResponse.model_validate(data).queries


def _search(collection: str, parse: Callable[[list[QueryHits]], T], **body: Any) -> Call[T]:
    """``POST /v1/collections/{collection}/search`` with a JSON body; ``parse`` reads its ``queries``."""
    return Call("POST", f"/v1/collections/{segment(collection)}/search", lambda data: parse(_queries(data)),
                json=body)


def search_texts(collection: str, texts: str | Sequence[str], *, k: int = 5, min_score: float | None = None,
                 filter: FilterInput = None) -> Call[list[QueryResults]]:
    queries = [texts] if isinstance(texts, str) else list(texts)
    return _search(collection, lambda found: [QueryResults(text=q.text or "", results=q.hits) for q in found],
                   texts=queries, **_options(k=k, min_score=min_score, filter=filter))


def search_images(collection: str, images: ImageInput | Sequence[ImageInput], *, k: int = 5,
                  min_score: float | None = None, label: str | None = None) -> Call[list[ImageQueryResults]]:
    files = [("file", image_file(image, i)) for i, image in enumerate(as_image_list(images))]
    form = {"k": str(k)}
    if min_score is not None:
        form["min_score"] = repr(float(min_score))
    if label is not None:
        form["label"] = label
    return Call("POST", f"/v1/collections/{segment(collection)}/search",
                lambda data: [ImageQueryResults(filename=q.filename, results=q.hits) for q in _queries(data)],
                data=form, files=files)


def _first_hits(found: list[QueryHits]) -> list[SearchHit]:
    return found[0].hits


def search_vector(collection: str, vector: Sequence[float], *, k: int = 5, min_score: float | None = None,
                  filter: FilterInput = None) -> Call[list[SearchHit]]:
    values = [float(value) for value in vector]  # lists, tuples, numpy arrays
    return _search(collection, _first_hits, vectors=[values], **_options(k=k, min_score=min_score, filter=filter))


def more_like(collection: str, item_id: str, *, k: int = 5, min_score: float | None = None,
              filter: FilterInput = None) -> Call[list[SearchHit]]:
    return _search(collection, _first_hits, item_ids=[item_id], **_options(k=k, min_score=min_score, filter=filter))


def _item_path(collection: str, item_id: str) -> str:
    return f"/v1/collections/{segment(collection)}/items/{segment(item_id)}"


def get_item(collection: str, item_id: str) -> Call[ItemResponse]:
    return Call("GET", _item_path(collection, item_id), ItemResponse.model_validate)


def list_items(collection: str, *, cursor: str | None = None, limit: int = 100) -> Call[ItemPage]:
    params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
    return Call("GET", f"/v1/collections/{segment(collection)}/items", ItemPage.model_validate, params=params)


def next_items(collection: str, page: ItemPage, *, limit: int = 100) -> Call[ItemPage] | None:
    """The call for the page after ``page``, or None after the last page."""
    return None if page.next_cursor is None else list_items(collection, cursor=page.next_cursor, limit=limit)


def put_item(collection: str, item_id: str, *, text: str | None = None, image: ImageInput | None = None,
             label: str = "", metadata: Mapping[str, Any] | None = None) -> Call[ItemChanged]:
    body: dict[str, Any] = {"label": label, "metadata": dict(metadata or {})}
    if text is not None:
        body["text"] = text
    if image is not None:
        body["image_base64"] = image_base64(image)
    return Call("PUT", _item_path(collection, item_id), ItemChanged.model_validate, json=body)


def delete_item(collection: str, item_id: str) -> Call[ItemChanged]:
    return Call("DELETE", _item_path(collection, item_id), ItemChanged.model_validate)


def collections() -> Call[list[CollectionSummary]]:
    return Call("GET", "/v1/collections", lambda data: CollectionsResponse.model_validate(data).collections)


def create_collection(name: str, *, embedder: str, index_factory: str | None = None) -> Call[CollectionSummary]:
    body = {"name": name, "embedder": embedder} | ({"index_factory": index_factory} if index_factory else {})
    return Call("POST", "/v1/collections", CollectionSummary.model_validate, json=body)


def delete_collection(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/collections/{segment(name)}", lambda _: None)


def reindex_item(item: ItemInput) -> dict[str, Any]:
    """One inline item as JSON; a mapping's ``image`` (path, bytes or PIL image) becomes ``image_base64``."""
    if isinstance(item, BaseModel):
        return item.model_dump(exclude_none=True)
    body = dict(item)
    if "image" in body:
        body["image_base64"] = image_base64(body.pop("image"))
    return body


def reindex(collection: str, *, source: str | None = None,
            items: Sequence[ItemInput] | None = None) -> Call[JobAccepted]:
    body: dict[str, Any] = {"collection": collection}
    if source is not None:
        body["source"] = source
    if items is not None:
        body["items"] = [reindex_item(item) for item in items]
    return Call("POST", "/v1/reindex", JobAccepted.model_validate, json=body)


def job(job_id: str) -> Call[JobStatus]:
    return Call("GET", f"/v1/jobs/{segment(job_id)}", JobStatus.model_validate)


def jobs(*, collection: str | None = None, status: str | None = None, limit: int = 100) -> Call[list[JobStatus]]:
    params = {"collection": collection, "status": status, "limit": limit}
    return Call("GET", "/v1/jobs", lambda data: JobList.model_validate(data).jobs,
                params={name: value for name, value in params.items() if value is not None})


def cancel_job(job_id: str) -> Call[JobStatus]:
    return Call("POST", f"/v1/jobs/{segment(job_id)}/cancel", JobStatus.model_validate)


def health() -> Call[HealthResponse]:
    return Call("GET", "/healthz", HealthResponse.model_validate)


def ready() -> Call[ReadyResponse]:
    return Call("GET", "/readyz", ReadyResponse.model_validate)
