"""Response models of re-index jobs (re-exported by arcsearch.service.schemas)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from arcsearch.service.core.records import JobState


class JobAccepted(BaseModel):
    job_id: str
    status: JobState


class JobProgress(BaseModel):
    done: int = Field(0, description="items embedded so far")
    total: int = Field(0, description="items to embed (0 until the source is read)")
    failed: int = Field(0, description="items that could not be indexed so far")
    rate_items_per_s: float | None = Field(None, description="items done per second since the job started "
                                           "(resumed items left out)")
    resumed: int = Field(0, description="items found embedded by an earlier, killed run of the same re-index "
                         "(its finished shards), counted in done")
    eta_s: float | None = Field(None, description="seconds left at the current rate, while running")


class JobFailure(BaseModel):
    id: str = Field(description="the item's external id")
    reason: str


class JobStatus(BaseModel):
    job_id: str
    collection: str
    status: JobState
    progress: JobProgress
    error: str | None = None
    version: str | None = Field(None, description="the published index version, once succeeded")
    num_items: int | None = None
    skipped: int | None = Field(None, description="items skipped as unreadable (= progress.failed)")
    failures: list[JobFailure] = Field(default_factory=list, description="failed items (the first 100)")
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None


class JobList(BaseModel):
    """Remembered re-index jobs, newest first."""

    jobs: list[JobStatus]


class LastReindex(BaseModel):
    """The collection's last finished re-index job."""

    job_id: str
    status: JobState
    finished_at: str | None = None
    num_items: int | None = None
