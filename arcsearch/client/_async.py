"""``AsyncClient``: the asyncio twin of ``Client`` (same methods, awaited; images encoded in a thread)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
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


class AsyncClient:
    """``Client`` for asyncio: the same arguments (``transport`` an async one, e.g. ``httpx.ASGITransport``),
    the same methods as coroutines; use it as an async context manager (or await ``aclose``)."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, api_key: str | None = None,
                 timeout_s: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S, retry: Retry | None = None,
                 headers: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._retry = retry
        self._http = httpx.AsyncClient(transport=transport,
                                       **http_options(base_url, api_key=api_key, timeout_s=timeout_s, headers=headers))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        tries = 1
        while True:
            try:
                response = await self._http.request(**call.request())
            except httpx.TransportError as exc:
                raise transport_error(exc) from exc
            wait_s = next_wait_s(self._retry, response, tries)
            if wait_s is None:
                return call.result(response)
            logger.info("%s %s answered %d; try %d in %.2f s", call.method, call.path, response.status_code,
                        tries + 1, wait_s)
            await asyncio.sleep(wait_s)
            tries += 1

    async def search_texts(self, collection: str, texts: str | Sequence[str], *, k: int = 5,
                           min_score: float | None = None, filter: FilterInput = None) -> list[schemas.QueryResults]:
        """The ``k`` nearest items of each text (one string or a batch), one ``QueryResults`` per text, in order."""
        return await self._send(calls.search_texts(collection, texts, k=k, min_score=min_score, filter=filter))

    async def search_images(self, collection: str, images: ImageInput | Sequence[ImageInput], *, k: int = 5,
                            min_score: float | None = None,
                            label: str | None = None) -> list[schemas.ImageQueryResults]:
        """The ``k`` nearest items of each image (a path, bytes or a PIL image, or a sequence), in order."""
        call = await asyncio.to_thread(calls.search_images, collection, images, k=k, min_score=min_score, label=label)
        return await self._send(call)

    async def search_vector(self, collection: str, vector: Sequence[float], *, k: int = 5,
                            min_score: float | None = None, filter: FilterInput = None) -> list[schemas.SearchHit]:
        """The ``k`` nearest items of a raw vector of the collection's dimension."""
        return await self._send(calls.search_vector(collection, vector, k=k, min_score=min_score, filter=filter))

    async def more_like(self, collection: str, item_id: str, *, k: int = 5, min_score: float | None = None,
                        filter: FilterInput = None) -> list[schemas.SearchHit]:
        """The ``k`` nearest items of an indexed item (the item itself excluded)."""
        return await self._send(calls.more_like(collection, item_id, k=k, min_score=min_score, filter=filter))

    async def get_item(self, collection: str, item_id: str) -> schemas.ItemResponse:
        """An item's label, source and metadata."""
        return await self._send(calls.get_item(collection, item_id))

    async def list_items(self, collection: str, *, cursor: str | None = None,
                         limit: int = 100) -> schemas.ItemPage:
        """One page of up to ``limit`` items (1..1000) in external-id order, from ``cursor`` (a previous page's
        ``next_cursor``; None: the first page)."""
        return await self._send(calls.list_items(collection, cursor=cursor, limit=limit))

    async def items(self, collection: str, *, limit: int = 100) -> AsyncIterator[schemas.ItemResponse]:
        """Every item of the collection, fetched lazily ``limit`` per request (``async for``)."""
        call: Call[schemas.ItemPage] | None = calls.list_items(collection, limit=limit)
        while call is not None:
            page = await self._send(call)
            for item in page.items:
                yield item
            call = calls.next_items(collection, page, limit=limit)

    async def put_item(self, collection: str, item_id: str, *, text: str | None = None,
                       image: ImageInput | None = None, label: str = "",
                       metadata: Mapping[str, Any] | None = None) -> schemas.ItemChanged:
        """Insert or replace one item (``text`` for a text collection, ``image`` for an image one)."""
        call = await asyncio.to_thread(calls.put_item, collection, item_id, text=text, image=image, label=label,
                                       metadata=metadata)
        return await self._send(call)

    async def delete_item(self, collection: str, item_id: str) -> schemas.ItemChanged:
        """Delete one item."""
        return await self._send(calls.delete_item(collection, item_id))

    async def collections(self) -> list[schemas.CollectionSummary]:
        """Every collection with its modality, size, dimension, index type and last re-index."""
        return await self._send(calls.collections())

    async def create_collection(self, name: str, *, embedder: str,
                                index_factory: str | None = None) -> schemas.CollectionSummary:
        """A new, empty collection over an embedder bundle folder (relative to the server's data root)."""
        return await self._send(calls.create_collection(name, embedder=embedder, index_factory=index_factory))

    async def delete_collection(self, name: str) -> None:
        """Delete a collection and its files."""
        await self._send(calls.delete_collection(name))

    async def reindex(self, collection: str, *, source: str | None = None,
                      items: Sequence[ItemInput] | None = None) -> schemas.JobAccepted:
        """Start re-indexing from ``source`` (a path under the server's data root) or inline ``items``."""
        return await self._send(await asyncio.to_thread(calls.reindex, collection, source=source, items=items))

    async def job(self, job: JobRef) -> schemas.JobStatus:
        """A re-index job's state and progress."""
        return await self._send(calls.job(job_id_of(job)))

    async def jobs(self, *, collection: str | None = None, status: str | None = None,
                   limit: int = 100) -> list[schemas.JobStatus]:
        """Remembered re-index jobs, newest first, of ``collection`` and in ``status`` where given."""
        return await self._send(calls.jobs(collection=collection, status=status, limit=limit))

    async def cancel_job(self, job: JobRef) -> schemas.JobStatus:
        """Cancel a job: a queued one at once, a running one at its next batch (then it ends ``cancelled``)."""
        return await self._send(calls.cancel_job(job_id_of(job)))

    async def wait_for_job(self, job: JobRef, *, timeout_s: float = 600.0, poll_s: float = 0.5) -> schemas.JobStatus:
        """Poll a job until it succeeds; ``JobFailed`` if it fails or is cancelled, ``JobTimeout`` after
        ``timeout_s``."""
        wait = JobWait(timeout_s=timeout_s, poll_s=poll_s)
        while not wait.done(status := await self.job(job)):
            await asyncio.sleep(wait.sleep_s(status))
        return status

    async def health(self) -> schemas.HealthResponse:
        """Liveness: the server answers."""
        return await self._send(calls.health())

    async def ready(self) -> schemas.ReadyResponse:
        """Readiness: every collection is loaded (``Overloaded``, code ``not_ready``, while not)."""
        return await self._send(calls.ready())
