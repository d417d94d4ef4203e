"""With no API key configured, serve this machine only: loopback Host names and loopback clients.

Without keys every route is open, and two things would let others in:

- DNS rebinding: a page on another site resolves its own name to 127.0.0.1 and drives the API from the
  user's browser, sending ``Host: evil.example``. Only loopback Host names (``localhost``, ``127.x.y.z``,
  ``[::1]``, any port, and the names in ``ARCSEARCH_ALLOWED_HOSTS``) are served; others get 421.
- A non-loopback bind: ``arcsearch serve`` refuses one (service.server.check_host), but the app factory
  (``uvicorn --factory arcsearch.service.app:create_app --host 0.0.0.0``) cannot know its bind address. It knows
  each request's client address, so a request from another machine gets 403 unless
  ``ARCSEARCH_ALLOW_NON_LOOPBACK`` is set. A client on a Unix socket (no address) is local.

Both answer with the service's error shape, before routing. With keys configured nothing here applies.
"""

from __future__ import annotations

import ipaddress
import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from arcsearch.service.errors import ApiError, NonLoopbackClientError, UntrustedHostError, error_response
from arcsearch.service.settings import Settings

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``localhost`` or an IP literal, IPv6 with or without brackets) is this machine only."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def host_name(header: str) -> str:
    """The name of a Host header without its port: ``[::1]:8000`` -> ``[::1]``, ``localhost:80`` -> ``localhost``."""
    if header.startswith("["):
        return header[:header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def refusal(scope: Scope, settings: Settings) -> ApiError | None:
    """Why this request is not served while no key is configured; None when it is."""
    header = Headers(scope=scope).get("host")
    if header is not None:
        name = host_name(header.strip())
        if not is_loopback(name) and name.lower() not in settings.allowed_host_set:
            return UntrustedHostError(f"Host {name[:100]!r} is not served: with no API key configured only loopback "
                                      "names (localhost, 127.0.0.1, [::1]) and ARCSEARCH_ALLOWED_HOSTS are")
    client = scope.get("client")
    if client and not settings.allow_non_loopback and not is_loopback(str(client[0])):
        return NonLoopbackClientError("with no API key configured only clients on this machine are served; "
                                      "configure ARCSEARCH_READ_KEYS / ARCSEARCH_ADMIN_KEYS")
    return None


class LocalOnlyMiddleware:
    """Refuse untrusted Host names and non-loopback clients while authentication is off (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.warned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        open_app = scope["type"] == "http" and not scope["app"].state.settings.auth_enabled
        error = refusal(scope, scope["app"].state.settings) if open_app else None
        if error is None:
            await self.app(scope, receive, send)
            return
        if isinstance(error, NonLoopbackClientError) and not self.warned:
            self.warned = True
            logger.warning("refusing requests from other machines (first: %s): no API keys are configured and "
                           "ARCSEARCH_ALLOW_NON_LOOPBACK is not set", scope["client"][0])
        response = error_response(error.status_code, error.code, error.message, headers={"Connection": "close"})
        await response(scope, receive, send)
