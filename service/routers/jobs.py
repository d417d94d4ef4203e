"""Re-index jobs: their state and progress, the recent ones, and cancelling one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from arcsearch.service.auth import AdminAccess, ReadAccess
from arcsearch.service.deps import JobsDep
from arcsearch.service.responses import job_status
from arcsearch.service.schemas import NO_CONTROL_PATTERN, CollectionName, ErrorResponse, JobList, JobState, JobStatus

router = APIRouter(prefix="/v1", tags=["reindex"])
ERRORS = {status: {"model": ErrorResponse} for status in (401, 403, 404, 409, 422, 503)}
JobIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_CONTROL_PATTERN)]
MAX_LISTED_JOBS = 1000


@router.get("/jobs", response_model=JobList, responses=ERRORS, dependencies=[ReadAccess],
            summary="Remembered re-index jobs, newest first; filter by collection and state")
def list_jobs(jobs: JobsDep, collection: Annotated[CollectionName | None, Query()] = None,
              status: Annotated[JobState | None, Query()] = None,
              limit: Annotated[int, Query(ge=1, le=MAX_LISTED_JOBS)] = 100) -> JobList:
    return JobList(jobs=[job_status(job) for job in jobs.recent(collection=collection, status=status, limit=limit)])


@router.get("/jobs/{job_id}", response_model=JobStatus, summary="State and progress of a re-index job",
            responses=ERRORS, dependencies=[ReadAccess])
def get_job(job_id: JobIdPath, jobs: JobsDep) -> JobStatus:
    return job_status(jobs.status(job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobStatus, responses=ERRORS, dependencies=[AdminAccess],
             summary="Cancel a job: a queued one at once (200), a running one at its next batch (202)")
def cancel_job(job_id: JobIdPath, jobs: JobsDep, response: Response) -> JobStatus:
    job = jobs.cancel(job_id)
    response.status_code = 200 if job.status == "cancelled" else 202
    return job_status(job)
