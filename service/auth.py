"""API keys: ``Authorization: Bearer <key>``; read-only keys may search and read, admin keys may also change.

Keys come from settings (``ARCSEARCH_READ_KEYS``, ``ARCSEARCH_ADMIN_KEYS``, comma-separated). With no
key configured at all, authentication is off and the server binds loopback only (see service.server).
Missing or unknown key -> 401 (with ``WWW-Authenticate: Bearer``); a read-only key on an admin route -> 403.
"""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import Depends, Request

from service.errors import ForbiddenError, UnauthorizedError
from service.settings import Settings

Role = Literal["read", "admin"]


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


def _check(request: Request, needed: Role) -> None:
    settings: Settings = request.app.state.settings
    if not settings.auth_enabled:
        return
    role = role_of(settings, request.headers.get("authorization"))
    challenge = {"WWW-Authenticate": "Bearer"}
    if role is None:
        missing = "authorization" not in request.headers
        raise UnauthorizedError("an API key is required: send 'Authorization: Bearer <key>'" if missing
                                else "the API key is not valid", headers=challenge)
    if needed == "admin" and role != "admin":
        raise ForbiddenError("this operation needs an admin API key; the key given is read-only")


async def require_read(request: Request) -> None:
    """Any configured key (read-only or admin); async, as it only compares strings (no thread hop)."""
    _check(request, "read")


async def require_admin(request: Request) -> None:
    """An admin key."""
    _check(request, "admin")


ReadAccess = Depends(require_read)
AdminAccess = Depends(require_admin)
