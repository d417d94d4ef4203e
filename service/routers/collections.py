"""Listing the collections the service holds."""

from __future__ import annotations

from fastapi import APIRouter

from service.auth import ReadAccess
from service.deps import RegistryDep
from service.schemas import CollectionsResponse

router = APIRouter(prefix="/v1", tags=["collections"], dependencies=[ReadAccess])


@router.get("/collections", response_model=CollectionsResponse,
            summary="Collections with modality, size, dimension, embedder hash and index type")
async def list_collections(registry: RegistryDep) -> CollectionsResponse:
    return CollectionsResponse(collections=registry.summaries())
