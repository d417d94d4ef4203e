"""Prometheus metrics in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from arcsearch.service.auth import ReadAccess

router = APIRouter(tags=["metrics"], dependencies=[ReadAccess])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text format)",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "metrics"}})
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.prometheus), media_type=CONTENT_TYPE_LATEST)
