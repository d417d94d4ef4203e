"""Liveness and readiness probes (open: no API key needed).

``/readyz`` tells a request without a valid key (when keys are configured) only the state: 200 ready,
or 503 with no details. With a key (or with auth off) it names the collections, and on failure says why,
with paths shown relative to the collections folder or the data root, never absolute.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Request

from service.auth import has_valid_key
from service.deps import RegistryDep, SettingsDep
from service.errors import NotReadyError
from service.schemas import ErrorResponse, HealthResponse, ReadyResponse
from service.settings import Settings

router = APIRouter(tags=["health"])
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/[^\s'\",;:()\[\]{}]+")


def without_absolute_paths(text: str, settings: Settings) -> str:
    """``text`` with paths below the collections folder or the data root made relative to it, and any other
    absolute path cut to its last part (``…/name``)."""
    roots = {Path(root) for root in (settings.collections_dir, settings.data_root)}
    roots |= {root.resolve() for root in roots}
    for root in sorted((str(root) for root in roots if root.is_absolute()), key=len, reverse=True):
        text = text.replace(root + "/", "").replace(root, ".")
    return ABSOLUTE_PATH.sub(lambda found: "…/" + found.group().rstrip("/").rsplit("/", 1)[-1], text)


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
        details = {name: without_absolute_paths(error, settings) for name, error in problems.items()}
        raise NotReadyError("some collections could not be loaded", details=details if trusted else None)
    return ReadyResponse(collections={s.name: s.status for s in registry.summaries()} if trusted else None)
