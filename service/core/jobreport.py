"""What a running re-index job writes to the job store: progress, items that failed, items resumed from an
earlier run, and its final state (retried while the database is busy)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from pathlib import PurePosixPath
from typing import Any

from arcsearch.index.build import ProgressCallback
from arcsearch.service.core.config import JobSettings
from arcsearch.service.core.errors import DomainError
from arcsearch.service.core.jobstore import JobStore
from arcsearch.service.core.paths import scrub_paths

logger = logging.getLogger(__name__)

FINAL_STATE_RETRY_S = 60.0  # a job's final state is written again while the database is busy, this long
FINAL_STATE_PAUSE_S = 1.0


class TooManyFailuresError(RuntimeError):
    """More items failed than ``job_max_failures`` allows: the job stops."""


class JobReport:
    """Writes one process's jobs' state through ``store()`` (the job store, opened on first use), under the
    manager's current ``settings()``."""

    def __init__(self, store: Callable[[], JobStore], *, settings: Callable[[], JobSettings],
                 roots: list[PurePosixPath]) -> None:
        self.store = store
        self.settings = settings  # read at each use, as the manager's settings are
        self.roots = roots

    def on_failure(self, job_id: str) -> Callable[[str, str], None]:
        """Record an item that cannot be indexed; TooManyFailuresError past ``job_max_failures``."""
        def record(item_id: str, reason: str) -> None:
            reason = scrub_paths(reason, self.roots)
            failed = self.store().add_failure(job_id, item_id, reason)
            logger.warning("job %s: item %s failed: %s", job_id, item_id, reason)
            allowed = self.settings().job_max_failures
            if failed > allowed:
                raise TooManyFailuresError(f"{failed} items failed, more than the {allowed} "
                                           "allowed (ARCSEARCH_JOB_MAX_FAILURES); see 'failures'")
        return record

    def on_progress(self, job_id: str, *, skipped: int) -> ProgressCallback:
        """Record progress (plus ``skipped`` rows read before the build); a write that fails is left out."""
        def record(done: int, total: int) -> None:
            try:
                self.store().update(job_id, done=done + skipped, total=total + skipped)
            except DomainError as exc:  # the next report catches up
                logger.warning("job %s: progress not recorded: %s", job_id, exc.message)
        return record

    def record_resumed(self, job_id: str, resumed: int) -> None:
        """Record how many items an earlier run of the job had embedded already."""
        with suppress(DomainError):
            self.store().update(job_id, resumed=resumed)

    def record_outcome(self, job_id: str, fields: dict[str, Any]) -> None:
        """Write a job's final state; while the database is busy, try again for up to FINAL_STATE_RETRY_S."""
        try:
            self.store().update_patiently(job_id, fields, retry_s=FINAL_STATE_RETRY_S, pause_s=FINAL_STATE_PAUSE_S)
        except DomainError as exc:
            logger.error("job %s: its final state (%s) was not recorded: %s", job_id, fields["status"], exc.message)
