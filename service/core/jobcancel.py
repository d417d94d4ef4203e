"""Cancel requests of re-index jobs: one flag per job, checked by the job before each embedding batch."""

from __future__ import annotations

import threading
from collections.abc import Callable

CANCELLED_ERROR = "cancelled on request; the previous index version is still served"


class JobCancelledError(RuntimeError):
    """The job was asked to stop (POST /v1/jobs/{id}/cancel); raised at its next batch boundary."""


class CancelRequests:
    """Job id -> a flag set when the job is asked to stop (thread-safe)."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def track(self, job_id: str) -> None:
        with self._lock:
            self._flags[job_id] = threading.Event()

    def request(self, job_id: str) -> None:
        """Ask a tracked job to stop (an untracked one is ignored)."""
        with self._lock:
            flag = self._flags.get(job_id)
        if flag is not None:
            flag.set()

    def check(self, job_id: str) -> None:
        """Raise JobCancelledError if the job was asked to stop."""
        with self._lock:
            flag = self._flags.get(job_id)
        if flag is not None and flag.is_set():
            raise JobCancelledError(CANCELLED_ERROR)

    def before_batch(self, job_id: str, then: Callable[[], object] | None) -> Callable[[], object]:
        """A ``before_batch`` hook: stop if the job was asked to, else run ``then`` (if any)."""
        def hook() -> None:
            self.check(job_id)
            if then is not None:
                then()
        return hook

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._flags.pop(job_id, None)
