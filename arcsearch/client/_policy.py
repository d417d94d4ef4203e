"""What both clients decide the same way: connection options, when to retry, when a job wait ends."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

import arcsearch
from arcsearch.client._errors import JobFailed, JobTimeout, retry_after_s
from arcsearch.service.schemas import JobAccepted, JobStatus

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
PENDING_JOB_STATES = frozenset({"queued", "running"})


def http_options(base_url: str, *, api_key: str | None, timeout_s: float | httpx.Timeout | None,
                 headers: Mapping[str, str] | None) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client`` / ``httpx.AsyncClient``: base URL, timeout and headers
    (``Authorization: Bearer <api_key>`` when a key is given)."""
    sent = {"User-Agent": f"arcsearch-client/{arcsearch.__version__}", **(headers or {})}
    if api_key:
        sent["Authorization"] = f"Bearer {api_key}"
    timeout = timeout_s if isinstance(timeout_s, httpx.Timeout) else httpx.Timeout(timeout_s)
    return {"base_url": base_url, "timeout": timeout, "headers": sent}


@dataclass(frozen=True)
class Retry:
    """Send a request again when the server answers 503 (overloaded, loading) or 429 (too many requests).

    At most ``attempts`` tries in all. Between tries the client waits what the ``Retry-After`` header
    asks, or ``backoff_s`` doubled after each try when there is none (at most ``max_wait_s``). A
    ``Retry-After`` longer than ``max_wait_s`` is not waited out: the error is raised at once, with
    ``retry_after_s`` on it. Errors without an answer (``TransportError``) are never retried.
    """

    attempts: int = 3
    max_wait_s: float = 30.0
    backoff_s: float = 0.5
    statuses: frozenset[int] = field(default=frozenset({429, 503}))

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Retry.attempts must be at least 1, got {self.attempts}")
        if self.max_wait_s < 0 or self.backoff_s < 0:
            raise ValueError("Retry.max_wait_s and Retry.backoff_s must not be negative")

    def wait_s(self, response: httpx.Response, tries: int) -> float | None:
        """Seconds to wait before the next try after ``tries`` tries ended with ``response``; None: stop."""
        if response.status_code not in self.statuses or tries >= self.attempts:
            return None
        asked = retry_after_s(response.headers)
        if asked is None:
            return min(self.max_wait_s, self.backoff_s * 2 ** (tries - 1))
        return asked if asked <= self.max_wait_s else None


def next_wait_s(retry: Retry | None, response: httpx.Response, tries: int) -> float | None:
    """``retry.wait_s``, or None when the client does not retry."""
    return retry.wait_s(response, tries) if retry is not None else None


JobRef = str | JobAccepted | JobStatus


def job_id_of(job: JobRef) -> str:
    """The id of a job given by id, by ``reindex``'s answer, or by its status."""
    return job if isinstance(job, str) else job.job_id


class JobWait:
    """The deadline and poll interval of one ``wait_for_job``: ``done`` after each status read, then
    sleep ``sleep_s``."""

    def __init__(self, *, timeout_s: float, poll_s: float) -> None:
        if timeout_s <= 0 or poll_s <= 0:
            raise ValueError(f"timeout_s and poll_s must be positive, got {timeout_s} and {poll_s}")
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.deadline = time.monotonic() + timeout_s

    def done(self, job: JobStatus) -> bool:
        """True once the job succeeded; raises ``JobFailed`` for any other finished state."""
        if job.status == "succeeded":
            return True
        if job.status in PENDING_JOB_STATES:
            return False
        raise JobFailed(f"re-index job {job.job_id} of collection {job.collection!r} ended {job.status}: "
                        f"{job.error or 'no reason given'}", code="job_failed", job=job)

    def sleep_s(self, job: JobStatus) -> float:
        """Seconds until the next poll; raises ``JobTimeout`` once the deadline has passed."""
        left_s = self.deadline - time.monotonic()
        if left_s <= 0:
            raise JobTimeout(f"re-index job {job.job_id} still {job.status} after {self.timeout_s:g} s "
                             f"({job.progress.done}/{job.progress.total} items)", code="job_timeout", job=job)
        return min(self.poll_s, left_s)
