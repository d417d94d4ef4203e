"""Request body size limits, answered with the service's error shape (413) before a handler runs."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLargeError, error_response


class BodySizeLimitMiddleware:
    """Refuse bodies over a per-path byte limit: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, *, default_max_bytes: int, max_bytes_by_path: dict[str, int]) -> None:
        self.app = app
        self.default_max_bytes = default_max_bytes
        self.max_bytes_by_path = max_bytes_by_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes_by_path.get(scope["path"], self.default_max_bytes)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response = error_response(413, PayloadTooLargeError.code,
                                      f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                                      {"limit_bytes": limit},
                                      headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes",
                                               details={"limit_bytes": limit})
            return message

        await self.app(scope, limited_receive, send)
