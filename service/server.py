"""Running the service with uvicorn: ``python -m service.server`` (settings from ARCSEARCH_* variables)."""

from __future__ import annotations

import ipaddress
import logging

import uvicorn

from service.app import create_app
from service.observability import LOG_FORMAT, install_log_record_factory
from service.settings import Settings

logger = logging.getLogger(__name__)


class UnsafeHostError(ValueError):
    """The host to bind is reachable from other machines, and that was not explicitly allowed."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``localhost`` or an IP literal) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(settings: Settings) -> None:
    """Refuse a non-loopback host unless ``allow_non_loopback`` is set (there is no authentication yet)."""
    if not is_loopback(settings.host) and not settings.allow_non_loopback:
        raise UnsafeHostError(f"refusing to bind {settings.host!r}: the API has no authentication yet; bind "
                              "127.0.0.1, or set ARCSEARCH_ALLOW_NON_LOOPBACK=true behind a trusted proxy")


def serve(settings: Settings | None = None) -> None:
    """Serve the API on ``settings.host:settings.port`` until interrupted (one process)."""
    settings = settings or Settings()
    check_host(settings)
    install_log_record_factory()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level.upper(),
                            format=LOG_FORMAT)
    logger.info("serving collections of %s on http://%s:%d", settings.collections_dir, settings.host,
                settings.port)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=10)


if __name__ == "__main__":
    serve()
