"""The Python client of the arcsearch service, on httpx: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

::

    from arcsearch.client import Client, NotFound

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        for query in client.search_texts("texts", ["a domestic animal"], k=5):
            print(query.text, [(hit.id, round(hit.score, 3)) for hit in query.results])
        job = client.wait_for_job(client.reindex("texts", source="wordnet_glosses.jsonl"))

Results are the service's own pydantic models (``service.schemas``: ``SearchHit``, ``QueryResults``,
``ItemResponse``, ``JobStatus``, ...); errors are ``ArcsearchError`` subclasses carrying the server's
``code`` (see ``arcsearch.client._errors`` for the tree). docs/client.md has every operation beside curl.
"""

from arcsearch.client._async import AsyncClient
from arcsearch.client._errors import (
    ApiError,
    ArcsearchError,
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    InvalidResponse,
    JobError,
    JobFailed,
    JobTimeout,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    ServerError,
    TooManyRequests,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
)
from arcsearch.client._policy import Retry
from arcsearch.client._sync import Client
from arcsearch.service.schemas import (
    CollectionSummary,
    HealthResponse,
    ImageQueryResults,
    ItemChanged,
    ItemPage,
    ItemResponse,
    JobAccepted,
    JobStatus,
    QueryResults,
    ReadyResponse,
    ReindexItem,
    SearchFilter,
    SearchHit,
)

__all__ = [
    "ApiError", "ArcsearchError", "AsyncClient", "BadRequest", "Client", "ClientError", "CollectionSummary",
    "Conflict", "Forbidden", "HealthResponse", "ImageQueryResults", "InvalidResponse", "ItemChanged", "ItemPage",
    "ItemResponse", "JobAccepted", "JobError", "JobFailed", "JobStatus", "JobTimeout", "NotFound", "Overloaded",
    "PayloadTooLarge", "QueryResults", "ReadyResponse", "ReindexItem", "RequestTimeout", "Retry", "SearchFilter",
    "SearchHit", "ServerError", "TooManyRequests", "TransportError", "Unauthorized", "UnsupportedMediaType",
    "ValidationError",
]
