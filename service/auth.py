"""API keys: ``Authorization: Bearer <key>``; read-only keys may search and read, admin keys may also change.

Keys come from settings (``ARCSEARCH_READ_KEYS``, ``ARCSEARCH_ADMIN_KEYS``, comma-separated). With no
key configured at all, authentication is off and only loopback clients and Host names are served (see
service.localonly and service.server). Missing or unknown key -> 401 (with ``WWW-Authenticate: Bearer``);
a read-only key on an admin route -> 403.

The role a route needs is declared once, by its dependency ``ReadAccess`` or ``AdminAccess`` (which also
puts the bearer scheme into OpenAPI). ``AuthMiddleware`` reads that declaration from the route a request
will reach and answers 401/403 before the body is read: an unauthenticated client never makes the server
receive or parse its body. A path that matches no route needs a read key (nothing is told about it).
The dependency checks again, for any app assembled without the middleware.
"""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from arcsearch.service.errors import ApiError, ForbiddenError, UnauthorizedError, error_response
from arcsearch.service.routetable import dependency_calls, route_of
from arcsearch.service.settings import Settings

Role = Literal["read", "admin"]
UNMATCHED_ROLE: Role = "read"
bearer_scheme = HTTPBearer(auto_error=False, description="an API key: read-only keys search and read, "
                           "admin keys also change collections, items and indexes")


def _matches(given: str, keys: frozenset[str]) -> bool:
    found = False
    for key in keys:  # compare with every key in constant time; no early exit on a match
        found |= hmac.compare_digest(given.encode(), key.encode())
    return found


def role_of(settings: Settings, authorization: str | None) -> Role | None:
    """The role the ``Authorization`` header grants; None for no or an unknown key (auth must be on)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    if _matches(token, settings.admin_key_set):
        return "admin"
    if _matches(token, settings.read_key_set):
        return "read"
    return None


def denial(settings: Settings, authorization: str | None, needed: Role | None) -> ApiError | None:
    """The 401/403 for a request needing ``needed`` with this header; None when it may pass."""
    if needed is None or not settings.auth_enabled:
        return None
    role = role_of(settings, authorization)
    if role is None:
        return UnauthorizedError("an API key is required: send 'Authorization: Bearer <key>'" if authorization is None
                                 else "the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    if needed == "admin" and role != "admin":
        return ForbiddenError("this operation needs an admin API key; the key given is read-only")
    return None


def has_valid_key(request: Request) -> bool:
    """Whether the request may see what a read key sees (any valid key, or auth is off)."""
    settings: Settings = request.app.state.settings
    return denial(settings, request.headers.get("authorization"), "read") is None


async def require_read(request: Request,
                       _: HTTPAuthorizationCredentials | None = Security(bearer_scheme)) -> None:
    """Any configured key (read-only or admin); async, as it only compares strings (no thread hop)."""
    error = denial(request.app.state.settings, request.headers.get("authorization"), "read")
    if error is not None:
        raise error


async def require_admin(request: Request,
                        _: HTTPAuthorizationCredentials | None = Security(bearer_scheme)) -> None:
    """An admin key."""
    error = denial(request.app.state.settings, request.headers.get("authorization"), "admin")
    if error is not None:
        raise error


ReadAccess = Depends(require_read)
AdminAccess = Depends(require_admin)
ROLE_OF_DEPENDENCY: dict[object, Role] = {require_read: "read", require_admin: "admin"}


def needed_role(route: BaseRoute | None) -> Role | None:
    """The role a route declares through its dependencies (the strictest); None for an open route."""
    if route is None:
        return UNMATCHED_ROLE
    roles = {ROLE_OF_DEPENDENCY[call] for call in dependency_calls(route) if call in ROLE_OF_DEPENDENCY}
    return "admin" if "admin" in roles else ("read" if roles else None)


def has_body(headers: Headers) -> bool:
    """Whether the request announces a body (one an early answer leaves unread)."""
    return headers.get("content-length", "0") not in {"", "0"} or "transfer-encoding" in headers


class AuthMiddleware:
    """Answer 401/403 from the headers alone, before the body is received (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.roles: dict[int, Role | None] = {}  # id(route) -> role; routes live as long as the app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["app"].state.settings.auth_enabled:
            await self.app(scope, receive, send)
            return
        settings: Settings = scope["app"].state.settings
        route = route_of(scope)
        key = id(route)
        if key not in self.roles:
            self.roles[key] = needed_role(route)
        headers = Headers(scope=scope)
        error = denial(settings, headers.get("authorization"), self.roles[key])
        if error is None:
            await self.app(scope, receive, send)
            return
        extra = {"Connection": "close"} if has_body(headers) else {}  # the body stays unread: end the connection
        response = error_response(error.status_code, error.code, error.message, error.details,
                                  headers={**(error.headers or {}), **extra})
        await response(scope, receive, send)
