"""``Client``: the blocking client (the async twin is ``AsyncClient``, with the same methods)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

import arcsearch.client._requests as calls
from arcsearch.client._errors import transport_error
from arcsearch.client._media import ImageInput
from arcsearch.client._policy import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT_S,
    JobRef,
    JobWait,
    Retry,
    http_options,
    job_id_of,
    next_wait_s,
)
from arcsearch.client._requests import Call, FilterInput, ItemInput
from arcsearch.service import schemas

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Client:
    """An arcsearch service over HTTP; use it as a context manager (or call ``close``).

    ``api_key`` is sent as ``Authorization: Bearer <key>``; ``timeout_s`` applies to each request (a
    float, an ``httpx.Timeout``, or None for none); ``retry`` (default: none) retries 503/429 answers;
    ``transport`` replaces httpx's network transport (e.g. ``httpx.MockTransport``).
    Every method raises an ``ArcsearchError`` subclass on failure (see ``arcsearch.client``).
    """

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, api_key: str | None = None,
                 timeout_s: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S, retry: Retry | None = None,
                 headers: Mapping[str, str] | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self._retry = retry
        self._http = httpx.Client(transport=transport,
                                  **http_options(base_url, api_key=api_key, timeout_s=timeout_s, headers=headers))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        tries = 1
        while True:
            try:
                response = self._http.request(**call.request())
            except httpx.TransportError as exc:
                raise transport_error(exc) from exc
            wait_s = next_wait_s(self._retry, response, tries)
            if wait_s is None:
                return call.result(response)
            logger.info("%s %s answered %d; try %d in %.2f s", call.method, call.path, response.status_code,
                        tries + 1, wait_s)
            time.sleep(wait_s)
            tries += 1

    def search_texts(self, collection: str, texts: str | Sequence[str], *, k: int = 5,
                     min_score: float | None = None, filter: FilterInput = None) -> list[schemas.QueryResults]:
        """The ``k`` nearest items of each text (one string or a batch), one ``QueryResults`` per text, in order."""
        return self._send(calls.search_texts(collection, texts, k=k, min_score=min_score, filter=filter))

    def search_images(self, collection: str, images: ImageInput | Sequence[ImageInput], *, k: int = 5,
                      min_score: float | None = None, label: str | None = None) -> list[schemas.ImageQueryResults]:
        """The ``k`` nearest items of each image (a path, bytes or a PIL image, or a sequence), in order."""
        return self._send(calls.search_images(collection, images, k=k, min_score=min_score, label=label))

    def search_vector(self, collection: str, vector: Sequence[float], *, k: int = 5,
                      min_score: float | None = None, filter: FilterInput = None) -> list[schemas.SearchHit]:
        """The ``k`` nearest items of a raw vector of the collection's dimension."""
        return self._send(calls.search_vector(collection, vector, k=k, min_score=min_score, filter=filter))

    def more_like(self, collection: str, item_id: str, *, k: int = 5, min_score: float | None = None,
                  filter: FilterInput = None) -> list[schemas.SearchHit]:
        """The ``k`` nearest items of an indexed item (the item itself excluded)."""
        return self._send(calls.more_like(collection, item_id, k=k, min_score=min_score, filter=filter))

    def get_item(self, collection: str, item_id: str) -> schemas.ItemResponse:
        """An item's label, source and metadata."""
        return self._send(calls.get_item(collection, item_id))

    def list_items(self, collection: str, *, cursor: str | None = None, limit: int = 100) -> schemas.ItemPage:
        """One page of up to ``limit`` items (1..1000) in external-id order, from ``cursor`` (a previous page's
        ``next_cursor``; None: the first page)."""
        return self._send(calls.list_items(collection, cursor=cursor, limit=limit))

    def items(self, collection: str, *, limit: int = 100) -> Iterator[schemas.ItemResponse]:
        """Every item of the collection, fetched lazily ``limit`` per request."""
        call: Call[schemas.ItemPage] | None = calls.list_items(collection, limit=limit)
        while call is not None:
            page = self._send(call)
            yield from page.items
            call = calls.next_items(collection, page, limit=limit)

    def put_item(self, collection: str, item_id: str, *, text: str | None = None, image: ImageInput | None = None,
                 label: str = "", metadata: Mapping[str, Any] | None = None) -> schemas.ItemChanged:
        """Insert or replace one item (``text`` for a text collection, ``image`` for an image one)."""
        return self._send(calls.put_item(collection, item_id, text=text, image=image, label=label,
                                         metadata=metadata))

    def delete_item(self, collection: str, item_id: str) -> schemas.ItemChanged:
        """Delete one item."""
        return self._send(calls.delete_item(collection, item_id))

    def collections(self) -> list[schemas.CollectionSummary]:
        """Every collection with its modality, size, dimension, index type and last re-index."""
        return self._send(calls.collections())

    def create_collection(self, name: str, *, embedder: str,
                          index_factory: str | None = None) -> schemas.CollectionSummary:
        """A new, empty collection over an embedder bundle folder (relative to the server's data root)."""
        return self._send(calls.create_collection(name, embedder=embedder, index_factory=index_factory))

    def delete_collection(self, name: str) -> None:
        """Delete a collection and its files."""
        self._send(calls.delete_collection(name))

    def reindex(self, collection: str, *, source: str | None = None,
                items: Sequence[ItemInput] | None = None) -> schemas.JobAccepted:
        """Start re-indexing from ``source`` (a path under the server's data root) or inline ``items``."""
        return self._send(calls.reindex(collection, source=source, items=items))

    def job(self, job: JobRef) -> schemas.JobStatus:
        """A re-index job's state and progress."""
        return self._send(calls.job(job_id_of(job)))

    def jobs(self, *, collection: str | None = None, status: str | None = None,
             limit: int = 100) -> list[schemas.JobStatus]:
        """Remembered re-index jobs, newest first, of ``collection`` and in ``status`` where given."""
        return self._send(calls.jobs(collection=collection, status=status, limit=limit))

    def cancel_job(self, job: JobRef) -> schemas.JobStatus:
        """Cancel a job: a queued one at once, a running one at its next batch (then it ends ``cancelled``)."""
        return self._send(calls.cancel_job(job_id_of(job)))

    def wait_for_job(self, job: JobRef, *, timeout_s: float = 600.0, poll_s: float = 0.5) -> schemas.JobStatus:
        """Poll a job until it succeeds; ``JobFailed`` if it fails or is cancelled, ``JobTimeout`` after
        ``timeout_s``."""
        wait = JobWait(timeout_s=timeout_s, poll_s=poll_s)
        while not wait.done(status := self.job(job)):
            time.sleep(wait.sleep_s(status))
        return status

    def health(self) -> schemas.HealthResponse:
        """Liveness: the server answers."""
        return self._send(calls.health())

    def ready(self) -> schemas.ReadyResponse:
        """Readiness: every collection is loaded (``Overloaded``, code ``not_ready``, while not)."""
        return self._send(calls.ready())
