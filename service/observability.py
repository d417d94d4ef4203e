"""Request ids and per-route metrics for every HTTP request (an outermost ASGI middleware).

A request's id is its ``X-Request-ID`` header when that is a short token (letters, digits, ``._-``, at
most 128 characters), otherwise a fresh one; it is echoed in the response header and put on every log
record emitted while the request is handled (``record.request_id``, ``-`` outside requests; log
format ``%(request_id)s``), including in the thread-pool handler threads.

Each request ends with one access line on the ``arcsearch.access`` logger (uvicorn's own access log is
turned off by ``service.server``)::

    request method=GET path=/v1/collections status=200 duration_ms=3.1 request_id=4f0c...

The same fields are on the record (``extra=``), as separate keys of a JSON log line (service/logformat.py).
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from urllib.parse import quote

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arcsearch.service.metrics import Metrics
from arcsearch.service.routetable import ROUTE_KEY, route_template

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
UNMATCHED_ROUTE = "<unmatched>"
PATH_SAFE = "/:@!$&'()*+,;=-._~"  # the access line re-escapes anything else (spaces, newlines, non-ASCII)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

access_logger = logging.getLogger("arcsearch.access")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("arcsearch_request_id", default="-")
_installed = False


def install_log_record_factory() -> None:
    """Give every log record a ``request_id`` attribute (idempotent; wraps the current factory)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def request_id_from(headers: Headers) -> str:
    given = headers.get(REQUEST_ID_HEADER, "")
    return given if REQUEST_ID_PATTERN.fullmatch(given) else uuid.uuid4().hex


class ObservabilityMiddleware:
    """Assign the request id, echo it, and record count and latency under the matched route template."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            # the route that answered, or the one an edge middleware found before answering (401, 413, ...)
            route = route_template(scope.get("route") or scope.get(ROUTE_KEY)) or UNMATCHED_ROUTE
            self.metrics.observe_request(scope["method"], route, status, seconds)
            method, path, duration_ms = scope["method"], quote(scope["path"], safe=PATH_SAFE), round(seconds * 1000, 1)
            access_logger.info("request method=%s path=%s status=%d duration_ms=%.1f request_id=%s", method, path,
                               status, duration_ms, request_id,
                               extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms})
            request_id_var.reset(token)
