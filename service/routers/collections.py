"""Collections: list them (size, dimension, embedder, index type, last re-index), create and delete them."""

from __future__ import annotations

from fastapi import APIRouter, Response

from arcsearch.index.bundle import BundleError
from arcsearch.index.faiss_index import IndexStoreError
from arcsearch.service.auth import AdminAccess, ReadAccess
from arcsearch.service.core.errors import InvalidSourceError
from arcsearch.service.core.paths import scrub_paths
from arcsearch.service.core.sources import resolve_source
from arcsearch.service.deps import JobsDep, RegistryDep, SettingsDep
from arcsearch.service.errors import InvalidEmbedderError, InvalidIndexFactoryError
from arcsearch.service.responses import collection_summary
from arcsearch.service.schemas import (
    CollectionCreate,
    CollectionName,
    CollectionsResponse,
    CollectionSummary,
    ErrorResponse,
)

router = APIRouter(prefix="/v1", tags=["collections"])
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 422, 503)}


@router.get("/collections", response_model=CollectionsResponse, dependencies=[ReadAccess],
            summary="Collections with modality, size, dimension, embedder, index type and last re-index")
def list_collections(registry: RegistryDep, jobs: JobsDep) -> CollectionsResponse:
    last = jobs.last_finished()  # empty while the jobs database cannot be read: the listing still works
    return CollectionsResponse(collections=[collection_summary(state, last.get(state.name))
                                            for state in registry.summaries()])


@router.post("/collections", status_code=201, response_model=CollectionSummary, responses=ERRORS,
             dependencies=[AdminAccess], summary="Create a collection; it is served (empty) at once")
def create_collection(body: CollectionCreate, registry: RegistryDep, settings: SettingsDep,
                      response: Response) -> CollectionSummary:
    embedder = resolve_source(settings.data_root, body.embedder, field="embedder")
    if not embedder.is_dir():
        raise InvalidSourceError(f"embedder {body.embedder!r} is not a folder; give an embedder bundle folder")
    budget = None if body.index_factory else body.index_budget()  # an explicit factory wins
    factory = body.index_factory or ("Flat" if budget else settings.index_factory)
    try:
        created = registry.create(body.name, embedder, factory, budget=budget, backend=body.backend)
    except IndexStoreError as exc:
        raise InvalidIndexFactoryError(scrub_paths(str(exc), registry.roots)) from None
    except (BundleError, ValueError, OSError) as exc:
        raise InvalidEmbedderError(f"embedder {body.embedder!r} is not a usable embedder bundle: "
                                   f"{scrub_paths(str(exc), registry.roots)}") from None
    response.headers["Location"] = f"/v1/collections/{body.name}"
    return collection_summary(created.summary())


@router.delete("/collections/{name}", status_code=204, responses=ERRORS | {507: {"model": ErrorResponse}},
               dependencies=[AdminAccess],
               summary="Unload a collection, then delete its files (409 while a re-index job runs on it)")
def delete_collection(name: CollectionName, registry: RegistryDep, jobs: JobsDep) -> Response:
    registry.delete(name, guard=jobs.removing(name))  # its finished jobs are forgotten first, or nothing happens
    return Response(status_code=204)
