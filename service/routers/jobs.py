"""Re-index job status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from arcsearch.service.auth import ReadAccess
from arcsearch.service.deps import JobsDep
from arcsearch.service.schemas import ErrorResponse, JobStatus

router = APIRouter(prefix="/v1", tags=["reindex"], dependencies=[ReadAccess])


@router.get("/jobs/{job_id}", response_model=JobStatus, summary="State and progress of a re-index job",
            responses={status: {"model": ErrorResponse} for status in (404, 422, 503)})
def get_job(job_id: Annotated[str, Path(min_length=1, max_length=64)], jobs: JobsDep) -> JobStatus:
    return jobs.status(job_id)
