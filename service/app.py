"""The FastAPI app factory. Nothing is loaded at import time; ``lifespan`` loads collections once."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager

from fastapi import FastAPI

from arcsearch.index.serving_lock import FolderInUseError, serving_lock
from arcsearch.service.auth import AuthMiddleware
from arcsearch.service.core.jobs import JOBS_PROBLEM_KEY, JobManager
from arcsearch.service.core.registry import Registry
from arcsearch.service.errors import install_backend_error_handler, install_error_handlers
from arcsearch.service.limits import RequestLimitsMiddleware
from arcsearch.service.localonly import LocalOnlyMiddleware
from arcsearch.service.metrics import Metrics
from arcsearch.service.observability import ObservabilityMiddleware, install_log_record_factory
from arcsearch.service.openapi import install_openapi
from arcsearch.service.routers import collections, health, items, jobs, legacy, metrics, page, reindex, search
from arcsearch.service.settings import Settings

logger = logging.getLogger(__name__)

MULTIPART_OVERHEAD_BYTES = 64 * 1024  # the final boundary and the small form fields
PART_OVERHEAD_BYTES = 1024  # a boundary and the part headers of each uploaded file
SHUTDOWN_JOIN_S = 5.0

DESCRIPTION = """Similarity search over images and texts embedded by ArcFace-trained encoders.

Every error has the same shape: `{"error": {"code": "...", "message": "...", "details": ...}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; collections load in a background thread at startup (``/readyz`` is 503 until then)."""
    settings = settings or Settings()
    install_log_record_factory()
    app_metrics = Metrics()
    registry = Registry(settings, metrics=app_metrics)
    job_manager = JobManager(settings)
    app_metrics.bind(registry, job_manager)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            try:  # one process serves a collections folder (or several that serve only Milvus collections)
                stack.enter_context(serving_lock(settings.collections_dir,
                                                 shared=settings.index_backend == "milvus"))
            except FolderInUseError as exc:
                logger.error("refusing to start: %s", exc)
                raise
            job_manager.open()  # marks jobs a dead process left running; if it cannot, job routes answer 503,
            registry.checks[JOBS_PROBLEM_KEY] = lambda: job_manager.problem  # /readyz names why, and searches go on
            loader = threading.Thread(target=registry.load_all, name="arcsearch-load", daemon=True)
            loader.start()
            yield
            job_manager.join(SHUTDOWN_JOIN_S)
            registry.close()

    app = FastAPI(title="arcsearch", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.jobs = job_manager
    app.state.metrics = app_metrics
    install_error_handlers(app)
    if settings.milvus_uri:
        install_backend_error_handler(app)
    install_edge(app, settings, app_metrics)
    for module in (search, legacy, reindex, jobs, collections, items, health, metrics, page):
        app.include_router(module.router)  # no prefix: service.routetable expands included routers as they are
    install_openapi(app, settings)
    return app


def body_limits(settings: Settings) -> dict[str, int]:
    """Byte limits of the routes whose bodies may exceed ``max_json_bytes``, by path template (for the
    collection search, of its multipart bodies: its JSON ones keep ``max_json_bytes``)."""
    image_search_bytes = (settings.max_image_request_bytes + MULTIPART_OVERHEAD_BYTES
                          + settings.max_batch_images * PART_OVERHEAD_BYTES)
    preview_bytes = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES + PART_OVERHEAD_BYTES
    return {"/v1/images/search": image_search_bytes, search.SEARCH_PATH: image_search_bytes,
            "/v1/images/preview": preview_bytes,
            "/v1/reindex": settings.max_request_bytes,
            "/v1/collections/{name}/items/{item_id:path}": settings.item_upsert_bytes}


def install_edge(app: FastAPI, settings: Settings, app_metrics: Metrics) -> None:
    """The middlewares every request passes before routing, outermost first: request id, metrics and access
    line (sees every answer); loopback-only while no key is configured; the API key (before the body is
    read); body size, JSON depth and path checks. A later ``add_middleware`` wraps the earlier ones."""
    app.add_middleware(RequestLimitsMiddleware, default_max_bytes=settings.max_json_bytes,
                       max_bytes_by_route=body_limits(settings), upload_only_routes=frozenset({search.SEARCH_PATH}))
    app.add_middleware(AuthMiddleware)
    app.add_middleware(LocalOnlyMiddleware)
    app.add_middleware(ObservabilityMiddleware, metrics=app_metrics)
