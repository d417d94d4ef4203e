"""Liveness and readiness probes (open: no API key needed).

``/readyz`` tells a request without a valid key (when keys are configured) only the state: 200 ready,
or 503 with no details. With a key (or with auth off) it names the collections, and on failure says why,
with paths shown relative to the collections folder or the data root, never absolute.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from arcsearch.service.auth import has_valid_key
from arcsearch.service.core.errors import NotReadyError
from arcsearch.service.core.jobs import JOBS_PROBLEM_KEY
from arcsearch.service.core.paths import scrub_paths, settings_roots
from arcsearch.service.deps import RegistryDep, SettingsDep
from arcsearch.service.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process answers")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get("/readyz", response_model=ReadyResponse, response_model_exclude_none=True,
            summary="Readiness: every collection is loaded (names and errors only for a request with a key)",
            responses={503: {"model": ErrorResponse, "description": "still loading, or a collection failed"}})
async def readyz(request: Request, registry: RegistryDep, settings: SettingsDep) -> ReadyResponse:
    trusted = has_valid_key(request)
    if not registry.ready:
        raise NotReadyError("collections are still loading")
    problems = registry.problems()
    if problems:
        roots = settings_roots(settings)
        details = {name: scrub_paths(error, roots) for name, error in problems.items()}
        what = "the jobs database cannot be used" if set(problems) == {JOBS_PROBLEM_KEY} else \
            "some collections could not be loaded"
        raise NotReadyError(what, details=details if trusted else None)
    return ReadyResponse(collections={s.name: s.status for s in registry.summaries()} if trusted else None)
