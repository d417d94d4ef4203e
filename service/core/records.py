"""What the domain reports about its collections and re-index jobs, as plain dataclasses.

The edge turns them into its response models (``arcsearch.service.responses``) field by field: the names
here are the JSON names of the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from arcsearch.index.bundle import IndexManifest, Modality

CollectionStatus = Literal["loading", "ready", "empty", "error"]
JobState = Literal["queued", "running", "succeeded", "failed", "interrupted", "cancelled"]


@dataclass(frozen=True)
class IndexFactsRecord:
    """How the live index searches and, when it was chosen by budget, what it measured (index/tuning.py)."""

    search_params: str = ""
    memory_mapped: bool = False
    target_recall: float | None = None
    max_memory_bytes: int | None = None
    recall_at_10: float | None = None
    query_ms_p50: float | None = None
    estimated_bytes: int | None = None

    @classmethod
    def of(cls, manifest: IndexManifest, *, memory_mapped: bool) -> IndexFactsRecord:
        tuning = manifest.tuning
        return cls(search_params=manifest.search_params, memory_mapped=memory_mapped,
                   **({} if tuning is None else {name: getattr(tuning, name) for name in (
                       "target_recall", "max_memory_bytes", "recall_at_10", "query_ms_p50", "estimated_bytes")}))


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
    index: IndexFactsRecord | None = None  # the live index's search parameters and measured recall
    error: str | None = None


@dataclass(frozen=True)
class JobProgressRecord:
    """Items embedded, to embed and failed so far; items per second since the job started (None before; items
    an earlier, killed run embedded are left out); ``resumed`` such items; ``eta_s`` seconds left (running)."""

    done: int = 0
    total: int = 0
    failed: int = 0
    rate_items_per_s: float | None = None
    resumed: int = 0
    eta_s: float | None = None


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
