"""Re-index jobs: build a new index version in a background thread, publish it, swap it in.

At most one job per collection runs at a time, in all processes of a folder (a second one is refused:
JobConflictError; service/core/joblocks.py). Queries keep using the old index until the new version is
published, loaded and swapped in. Job state is kept in SQLite (service/core/jobstore.py): it survives a
restart, and a job that was running when its process died is reported ``interrupted`` (its half-built
version is never served). Items that cannot be indexed are recorded per job; more than ``job_max_failures``
of them abort the job. Before each embedding batch a job waits up to ``job_yield_ms`` for the collection's
queries to be answered (``MicroBatcher.wait_idle``), so that searches keep their latency on shared cores.

A job replaces the collection's contents as they were when it was accepted: upserts and deletes accepted
while it runs are carried over onto the new version (``publish`` of the collection). A job-store write
that fails (a locked or full database) leaves nothing half-done: a submit is refused (a storage error) and
marks nothing busy; a running job fails with the reason, and its final state is retried until written.
If the jobs database cannot be opened at all, job calls raise JobsUnavailableError and searches go on.
A cancelled job (service/core/jobcancel.py) stops before its next embedding batch and publishes nothing.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any, TypeVar

from arcsearch.index.build import CorpusItem, IndexBuildError
from arcsearch.index.chooser import IndexBudget
from arcsearch.service.core.config import JobSettings
from arcsearch.service.core.errors import (
    DomainError,
    JobConflictError,
    JobFinishedError,
    JobsUnavailableError,
)
from arcsearch.service.core.jobcancel import CANCELLED_ERROR, CancelRequests, JobCancelledError
from arcsearch.service.core.joblocks import RunningJobLocks
from arcsearch.service.core.jobreport import JobReport
from arcsearch.service.core.jobstore import JobStore, now
from arcsearch.service.core.paths import display_path, scrub_paths, settings_roots
from arcsearch.service.core.rebuild import rebuild_collection
from arcsearch.service.core.records import JobRecord, LastReindexRecord
from arcsearch.service.core.served import ChangeMark, ServedCollection
from arcsearch.service.core.sources import LoadedItems

logger = logging.getLogger(__name__)
T = TypeVar("T")

ItemLoader = Callable[[], Sequence[CorpusItem] | LoadedItems]
JOBS_PROBLEM_KEY = "*jobs"  # the jobs database's entry among the problems /readyz reports
class JobManager:
    """Starts re-index jobs in threads; their state lives in SQLite (``JobStore``) and survives restarts."""

    def __init__(self, settings: JobSettings) -> None:
        self.settings = settings
        self.problem: str | None = None  # why the jobs database cannot be used (None: it can, or not tried yet)
        self._roots = settings_roots(settings)
        self._store: JobStore | None = None
        self._active: dict[str, str] = {}  # collection -> running job id
        self._threads: dict[str, threading.Thread] = {}
        self._cancels = CancelRequests()
        self._running = RunningJobLocks(settings.jobs_db_path)  # across the processes of one folder
        self._lock = threading.Lock()  # guards _store, _active and _threads
        self._report = JobReport(lambda: self.store, settings=lambda: self.settings, roots=self._roots)

    @property
    def store(self) -> JobStore:
        """The job file, opened on first use (then jobs a dead process left running are marked);
        JobsUnavailableError while it cannot be opened (each use tries again)."""
        with self._lock:
            if self._store is None:
                self._store = self._open()
            return self._store

    def _open(self) -> JobStore:
        path = self.settings.jobs_db_path
        store = None
        try:
            store = JobStore(path, busy_timeout_s=self.settings.sqlite_busy_timeout_s)
            interrupted = store.mark_interrupted(self._running.running_elsewhere)
        except (DomainError, OSError) as exc:
            if store is not None:
                store.close()
            self.problem = exc.message if isinstance(exc, DomainError) else scrub_paths(
                f"the jobs database {display_path(path, self._roots)} cannot be opened: {exc}", self._roots)
            raise JobsUnavailableError(f"{self.problem}; re-index jobs are off until it is repaired or removed "
                                       "(searches go on)") from exc
        self.problem = None
        if interrupted:
            logger.warning("marked %d jobs interrupted by a previous stop: %s", len(interrupted),
                           ", ".join(interrupted))
        return store

    def open(self) -> str | None:
        """Open the job file now (at startup); returns why it cannot be used, if it cannot."""
        try:
            self.store  # noqa: B018 -- opens the file
        except JobsUnavailableError as exc:
            logger.error("%s", exc.message)
        return self.problem

    def submit(self, collection: ServedCollection, load_items: ItemLoader, *, source: str,
               budget: IndexBudget | None = None, workers: int | None = None) -> JobRecord:
        """Queue a job that indexes ``load_items()`` into ``collection`` (index chosen by ``budget`` if given)
        with ``workers`` processes (default ``reindex_workers``; it resumes from the shards of a killed one,
        index.sharded); JobConflictError if one is already running, a storage error if the job cannot be
        recorded (then nothing is started or marked)."""
        store = self.store
        with self._lock:
            running = self._active.get(collection.name)
            if running is not None:
                raise JobConflictError(f"a re-index job for {collection.name!r} is already running",
                                       details={"job_id": running})
            job_id = secrets.token_hex(8)
            self._running.claim(collection.name, job_id)  # JobConflictError if another process runs one
            since = collection.change_mark()  # changes accepted from now on are carried over onto the new version
            try:
                store.create(job_id, collection.name, source, keep=self.settings.keep_jobs)
            except BaseException:
                collection.forget_mark(since)
                self._running.release(collection.name)
                raise
            self._active[collection.name] = job_id
            context = contextvars.copy_context()  # the job's log records carry the submitting request's id
            run = (self._run, job_id, source, collection, load_items, since, budget,
                   workers or self.settings.reindex_workers)
            thread = threading.Thread(target=context.run, args=run, name=f"reindex-{collection.name}", daemon=True)
            self._threads[job_id] = thread
            self._cancels.track(job_id)
        try:
            thread.start()
        except BaseException:
            self._forget(job_id, collection.name)
            with suppress(DomainError):
                store.update(job_id, status="failed", error="the job's thread could not start", finished_at=now())
            raise
        logger.info("job %s: re-index %r from %s", job_id, collection.name, source)
        return self.status(job_id)

    def status(self, job_id: str) -> JobRecord:
        """The job's state; JobNotFoundError if unknown (or forgotten)."""
        return self.store.known(job_id)

    def recent(self, *, collection: str | None = None, status: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Remembered jobs, newest first, of ``collection`` and in ``status`` where given."""
        return self.store.recent(collection=collection, status=status, limit=limit)

    def cancel(self, job_id: str) -> JobRecord:
        """Stop a job: a queued one now (its collection is free at once), a running one at its next batch
        boundary (it reads ``running`` until then, then ``cancelled``; one already publishing finishes).
        JobNotFoundError if unknown, JobFinishedError if it has finished."""
        store = self.store
        with self._lock:
            job = store.known(job_id)
            if job.status not in ("queued", "running"):
                raise JobFinishedError(f"job {job_id!r} has already finished ({job.status})",
                                       details={"status": job.status})
            self._cancels.request(job_id)
            if store.transition(job_id, "queued", status="cancelled", error=CANCELLED_ERROR, finished_at=now()):
                self._release(job_id, job.collection)
        logger.info("job %s: cancel requested (was %s)", job_id, job.status)
        return self.status(job_id)

    @contextmanager
    def removing(self, collection: str) -> Iterator[None]:
        """Forget the finished jobs of ``collection`` and hold off new ones for the block (its removal);
        JobConflictError if a job runs on it (here or elsewhere), a storage error if the job store cannot be
        written (then nothing is forgotten)."""
        store = self.store
        with self._lock:
            running = self._active.get(collection)
            if running is not None or self._running.running_elsewhere(collection):
                raise JobConflictError(f"a re-index job for {collection!r} is running; wait for it to finish",
                                       details={"job_id": running})
            store.forget_collection(collection)
            yield

    def last_finished(self) -> dict[str, LastReindexRecord]:
        """Collection -> its last finished re-index job (none while the jobs database cannot be read)."""
        return self._read_or_nothing(JobStore.last_finished)

    def counts_by_state(self) -> dict[str, int]:
        """How many remembered jobs are in each state (none while the jobs database cannot be read)."""
        return self._read_or_nothing(JobStore.counts_by_state)

    def _read_or_nothing(self, read: Callable[[JobStore], dict[str, T]]) -> dict[str, T]:
        """``read(store)``, or {} while the jobs database cannot be read."""
        try:
            return read(self.store)
        except DomainError as exc:
            logger.debug("no job information: %s", exc.message)
            return {}

    def _give_way_to_queries(self, collection: ServedCollection) -> Callable[[], object] | None:
        """Before each embedding batch, wait up to ``job_yield_ms`` while the collection answers queries:
        on shared cores a search then waits for at most one job batch, not for a run of them."""
        wait_s = self.settings.job_yield_ms / 1000.0
        if wait_s <= 0:
            return None
        return lambda: collection.batcher is None or collection.batcher.wait_idle(wait_s)

    def _run(self, job_id: str, source: str, collection: ServedCollection, load_items: ItemLoader,
             since: ChangeMark, budget: IndexBudget | None, workers: int) -> None:
        outcome: dict[str, Any] | None
        try:
            outcome = self._execute(job_id, source, collection, load_items, since, budget=budget, workers=workers)
        except JobCancelledError:
            logger.info("job %s: cancelled; %r keeps its live version", job_id, collection.name)
            outcome = {"status": "cancelled", "error": CANCELLED_ERROR}
        except Exception as exc:  # a job reports every failure in its state instead of crashing a thread
            logger.exception("job %s failed", job_id)
            message = exc.message if isinstance(exc, DomainError) else str(exc)
            outcome = {"status": "failed", "error": scrub_paths(f"{type(exc).__name__}: {message}", self._roots)}
        finally:
            collection.forget_mark(since)
            with self._lock:
                self._release(job_id, collection.name)  # the collection is free again, whatever happened
        if outcome is not None:
            self._report.record_outcome(job_id, outcome | {"finished_at": now()})
        self._forget(job_id, collection.name)

    def _execute(self, job_id: str, source: str, collection: ServedCollection, load_items: ItemLoader,
                 since: ChangeMark, *, budget: IndexBudget | None, workers: int) -> dict[str, Any] | None:
        """Build and publish; the job's outcome, or None if it was cancelled before it started."""
        store = self.store
        if not store.transition(job_id, "queued", status="running", started_at=now()):
            return None  # cancelled while queued: its state is written already
        loaded = load_items()
        items, bad_rows = (loaded.items, loaded.failures) if isinstance(loaded, LoadedItems) else (loaded, [])
        progress = self._report.on_progress(job_id, skipped=len(bad_rows))
        progress(0, len(items))
        on_failure = self._report.on_failure(job_id)
        for item_id, reason in bad_rows:
            on_failure(item_id, reason)
        if not items:
            raise IndexBuildError(f"no readable item in the source ({len(bad_rows)} bad rows; see 'failures')")
        before_batch = self._cancels.before_batch(job_id, self._give_way_to_queries(collection))
        live_items, version = rebuild_collection(
            collection, items, settings=self.settings, budget=budget, workers=workers, source=source, since=since,
            on_failure=on_failure, progress=progress, on_resume=partial(self._report.record_resumed, job_id),
            before_batch=before_batch, before_publish=lambda: self._cancels.check(job_id))
        logger.info("job %s: %r now serves version %s (%d items)", job_id, collection.name, version, live_items)
        return {"status": "succeeded", "version": version, "num_items": live_items}

    def _release(self, job_id: str, collection: str) -> None:
        """Free ``collection`` if ``job_id`` holds it (call with ``_lock`` held)."""
        if self._active.get(collection) == job_id:
            del self._active[collection]
            self._running.release(collection)

    def _forget(self, job_id: str, collection: str) -> None:
        with self._lock:
            self._release(job_id, collection)
            self._threads.pop(job_id, None)
        self._cancels.forget(job_id)

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for running jobs (at shutdown); unfinished ones leave no live version."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout_s)
