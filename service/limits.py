"""Request limits checked before a handler runs, answered with the service's error shape.

- Body size, per route (by its path template, see service.routetable): by Content-Length up front (413,
  nothing read), else while the body streams in. JSON routes get a small default; service.app gives the
  upload, item-upsert and re-index routes their larger limits.
- JSON nesting: a JSON body is read (within its limit) and its depth measured on the bytes, without
  parsing, before FastAPI parses it: deeper than ``MAX_JSON_DEPTH`` -> 422 ``json_too_deep`` (Python's
  parser would hit its recursion limit at ~1000 levels; the schemas need far fewer).
- A path holding control characters (``%0A`` ...) -> 422: no route, id or log line should carry one.
"""

from __future__ import annotations

import re

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arcsearch.index.metadata import CONTROL
from arcsearch.service.errors import JsonTooDeepError, PayloadTooLargeError, error_response
from arcsearch.service.routetable import route_of, route_template

MAX_JSON_DEPTH = 32  # metadata may nest 16 levels (index.metadata) inside a re-index request's 3
INLINE_SCAN_MAX_BYTES = 256 * 1024  # larger bodies are measured in the thread pool
SCAN_CHUNK = 1 << 20
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (0 for a scalar), from its brackets outside strings.

    Linear in the body; never recursive. On text that is not JSON the count is meaningless, but the
    parser refuses such text anyway.
    """
    brackets = np.frombuffer(JSON_STRING.sub(b"", body).translate(None, NOT_BRACKETS), np.uint8)
    deepest = level = 0
    for start in range(0, len(brackets), SCAN_CHUNK):
        steps = 3 - (brackets[start:start + SCAN_CHUNK] & 6).astype(np.int32)  # [ { (0x5B 0x7B) +1, ] } (0x5D 0x7D) -1
        levels = np.cumsum(steps) + level
        deepest, level = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def is_json(headers: Headers) -> bool:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def too_large(limit: int, declared: str | None = None) -> PayloadTooLargeError:
    size = f"request body of {declared} bytes" if declared else "request body"
    return PayloadTooLargeError(f"{size} exceeds the limit of {limit} bytes", details={"limit_bytes": limit})


class RequestLimitsMiddleware:
    """Enforce the limits of the module docstring; ``max_bytes_by_route`` maps path templates to byte limits."""

    def __init__(self, app: ASGIApp, *, default_max_bytes: int, max_bytes_by_route: dict[str, int],
                 upload_only_routes: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.default_max_bytes = default_max_bytes
        self.max_bytes_by_route = max_bytes_by_route
        self.upload_only_routes = upload_only_routes  # their larger limit is for uploads: JSON gets the default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        template = route_template(route_of(scope)) or ""
        limit = self.max_bytes_by_route.get(template, self.default_max_bytes)
        if template in self.upload_only_routes and is_json(headers):
            limit = self.default_max_bytes
        declared = headers.get("content-length", "")
        if CONTROL.search(scope["path"]):
            message = "the path holds a control character"
            await error_response(422, "validation_error", message, [{"loc": ["path"], "msg": message,
                                 "type": "value_error"}], headers={"Connection": "close"})(scope, receive, send)
        elif declared.isdigit() and int(declared) > limit:
            error = too_large(limit, declared)
            await error_response(413, error.code, error.message, error.details,
                                 headers={"Connection": "close"})(scope, receive, send)
        elif is_json(headers) and scope["method"] not in {"GET", "HEAD"}:
            await self.checked_json(scope, receive, send, limit)
        else:
            await self.app(scope, self.limited(receive, limit), send)

    @staticmethod
    def limited(receive: Receive, limit: int) -> Receive:
        """``receive``, raising 413 (as the handler reads) once more than ``limit`` body bytes have come."""
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
            return message
        return limited_receive

    async def checked_json(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Read the whole JSON body, refuse it if too large or too deep, else hand it on unchanged."""
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                error = too_large(limit)
                await error_response(413, error.code, error.message, error.details,
                                     headers={"Connection": "close"})(scope, receive, send)
                return
        body = b"".join(chunks)
        depth = 0
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH:  # else it cannot nest deeper
            depth = json_depth(body) if size <= INLINE_SCAN_MAX_BYTES else await run_in_threadpool(json_depth, body)
        if depth > MAX_JSON_DEPTH:
            error = JsonTooDeepError(f"the JSON body nests {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted",
                                     details={"max_depth": MAX_JSON_DEPTH})
            await error_response(422, error.code, error.message, error.details)(scope, receive, send)
            return
        await self.app(scope, self.replay(body, receive), send)

    @staticmethod
    def replay(body: bytes, receive: Receive) -> Receive:
        """A ``receive`` that gives ``body`` once, then whatever the connection says (a disconnect)."""
        pending = [body]

        async def replay_receive() -> Message:
            if pending:
                return {"type": "http.request", "body": pending.pop(), "more_body": False}
            return await receive()
        return replay_receive
