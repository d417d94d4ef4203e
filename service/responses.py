"""The domain's records as the API's response models (same field names, so the JSON is the records')."""

from __future__ import annotations

from dataclasses import asdict

from arcsearch.service.core.records import CollectionState, JobRecord, LastReindexRecord
from arcsearch.service.schemas import CollectionSummary, JobStatus


def collection_summary(state: CollectionState, last: LastReindexRecord | None = None) -> CollectionSummary:
    """A collection's summary, with its last finished re-index job (``last``, None if never or unknown)."""
    return CollectionSummary.model_validate({**asdict(state), "last_reindex": asdict(last) if last else None})


def job_status(record: JobRecord) -> JobStatus:
    return JobStatus.model_validate(asdict(record))
