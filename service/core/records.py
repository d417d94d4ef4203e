"""What the domain reports about its collections and re-index jobs, as plain dataclasses.

The edge turns them into its response models (``arcsearch.service.responses``) field by field: the names
here are the JSON names of the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from arcsearch.index.bundle import Modality

CollectionStatus = Literal["loading", "ready", "empty", "error"]
JobState = Literal["queued", "running", "succeeded", "failed", "interrupted", "cancelled"]


@dataclass(frozen=True)
class CollectionState:
    """One collection as the service holds it: loaded (``ready`` or ``empty``), ``loading``, or ``error``."""

    name: str
    modality: Modality
    status: CollectionStatus
    dim: int
    embedder_sha256: str
    size: int = 0  # indexed items
    embedder_origin: str = ""  # the embedder bundle the collection's copy was made from
    index_type: str | None = None  # FAISS factory of the live index (or of the first one, not yet indexed)
    version: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class JobProgressRecord:
    """Items embedded, to embed and failed so far; items per second since the job started (None before)."""

    done: int = 0
    total: int = 0
    failed: int = 0
    rate_items_per_s: float | None = None


@dataclass(frozen=True)
class JobFailureRecord:
    """An item that could not be indexed: its external id (or ``line N``) and why."""

    id: str
    reason: str


@dataclass(frozen=True)
class JobRecord:
    """A re-index job's state, progress and result; times are ISO 8601 strings (UTC)."""

    job_id: str
    collection: str
    status: JobState
    progress: JobProgressRecord
    created_at: str
    error: str | None = None
    version: str | None = None  # the published index version, once succeeded
    num_items: int | None = None
    skipped: int | None = None  # items skipped as unreadable (= progress.failed)
    failures: list[JobFailureRecord] = field(default_factory=list)  # the first MAX_REPORTED_FAILURES
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class LastReindexRecord:
    """A collection's last finished re-index job."""

    job_id: str
    status: JobState
    finished_at: str | None = None
    num_items: int | None = None
