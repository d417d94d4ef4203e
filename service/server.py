"""Running the service with uvicorn: ``python -m arcsearch.service.server`` (settings from ARCSEARCH_* variables)."""

from __future__ import annotations

import logging

import uvicorn

from arcsearch.service.app import create_app
from arcsearch.service.localonly import is_loopback
from arcsearch.service.logformat import configure_logging, uvicorn_log_config
from arcsearch.service.observability import install_log_record_factory
from arcsearch.service.settings import Settings

logger = logging.getLogger(__name__)


class UnsafeHostError(ValueError):
    """The host to bind is reachable from other machines, and that was not explicitly allowed."""


def check_host(settings: Settings) -> None:
    """Refuse a non-loopback host when no API key is configured, unless ``allow_non_loopback`` is set.

    With keys configured any host may be bound. Without keys every route is open, so the service binds
    loopback only and says so; ``allow_non_loopback`` (kept for containers that publish the port on the
    host's loopback only) overrides that with a loud warning. The app enforces the same rule per request
    (service.localonly), for servers started without this check (``uvicorn --factory``).
    """
    if settings.auth_enabled:
        logger.info("API keys configured: %d read-only, %d admin", len(settings.read_key_set),
                    len(settings.admin_key_set))
        return
    if is_loopback(settings.host):
        logger.warning("no API keys configured (ARCSEARCH_READ_KEYS / ARCSEARCH_ADMIN_KEYS): every route is open, "
                       "so the service binds loopback only (%s)", settings.host)
        return
    if not settings.allow_non_loopback:
        raise UnsafeHostError(f"refusing to bind {settings.host!r}: no authentication, since no API keys are "
                              "configured; set ARCSEARCH_READ_KEYS / ARCSEARCH_ADMIN_KEYS, or bind 127.0.0.1")
    logger.warning("!!! UNAUTHENTICATED: binding %s with no API keys because ARCSEARCH_ALLOW_NON_LOOPBACK is set; "
                   "anyone who reaches this port can search, re-index and delete. Configure API keys. !!!",
                   settings.host)


def serve(settings: Settings | None = None) -> None:
    """Serve the API on ``settings.host:settings.port`` until interrupted (one process)."""
    settings = settings or Settings()
    install_log_record_factory()
    configure_logging(settings.log_level, log_format=settings.log_format)
    logging.getLogger("arcsearch.access").setLevel(settings.log_level.upper())  # warning and up: no access lines
    check_host(settings)
    logger.info("serving collections of %s on http://%s:%d", settings.collections_dir, settings.host,
                settings.port)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                log_config=uvicorn_log_config(settings.log_format), access_log=False,
                timeout_graceful_shutdown=10)  # our middleware logs each request, with its id


if __name__ == "__main__":
    serve()
