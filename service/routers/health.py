"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import RegistryDep
from service.errors import NotReadyError
from service.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process answers")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get("/readyz", response_model=ReadyResponse, summary="Readiness: every collection is loaded",
            responses={503: {"model": ErrorResponse, "description": "still loading, or a collection failed"}})
async def readyz(registry: RegistryDep) -> ReadyResponse:
    if not registry.ready:
        raise NotReadyError("collections are still loading")
    problems = registry.problems()
    if problems:
        raise NotReadyError("some collections could not be loaded", details=problems)
    return ReadyResponse(collections={s.name: s.status for s in registry.summaries()})
