"""Re-index jobs: build a new index version in a background thread, publish it, swap it in.

At most one job per collection runs at a time (a second one is refused with 409). Queries keep
using the old index until the new version is published, loaded and swapped in. Job state is kept in
SQLite (service/jobstore.py): it survives a restart, and a job that was running when the process
died is reported ``interrupted`` (its half-built staging folder is never served). Items that cannot
be indexed are recorded per job; more than ``job_max_failures`` of them abort the job. Before each
embedding batch a job waits up to ``job_yield_ms`` for the collection's queries to be answered
(``MicroBatcher.wait_idle``), so that searches keep their latency while it runs on the same cores.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from index.build import CorpusItem, IndexBuildError, build_store
from index.collections import VERSIONS_DIR, collection_dir, publish_version, staging_dir
from index.store import IndexStore
from service.collection import LoadedCollection
from service.errors import JobConflictError, JobNotFoundError
from service.jobstore import JobStore, now
from service.schemas import JobStatus, LastReindex
from service.settings import Settings
from service.sources import LoadedItems

logger = logging.getLogger(__name__)

ItemLoader = Callable[[], Sequence[CorpusItem] | LoadedItems]


class TooManyFailuresError(RuntimeError):
    """More items failed than ``settings.job_max_failures`` allows; the job is aborted."""


class JobManager:
    """Starts re-index jobs in threads; their state lives in SQLite (``JobStore``) and survives restarts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: JobStore | None = None
        self._active: dict[str, str] = {}  # collection -> running job id
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()  # guards _active, _threads and (with the job store) swaps

    @property
    def store(self) -> JobStore:
        """The job file, opened on first use (at startup, jobs a dead process left running are marked)."""
        with self._lock:
            if self._store is None:
                self._store = JobStore(self.settings.jobs_db_path)
                interrupted = self._store.mark_interrupted()
                if interrupted:
                    logger.warning("marked %d jobs interrupted by a previous stop: %s", len(interrupted),
                                   ", ".join(interrupted))
            return self._store

    def submit(self, collection: LoadedCollection, load_items: ItemLoader, *, source: str) -> JobStatus:
        """Queue a job that indexes ``load_items()`` into ``collection``; 409 if one is already running."""
        store = self.store
        with self._lock:
            running = self._active.get(collection.name)
            if running is not None:
                raise JobConflictError(f"a re-index job for {collection.name!r} is already running",
                                       details={"job_id": running})
            job_id = secrets.token_hex(8)
            store.create(job_id, collection.name, source)
            self._active[collection.name] = job_id
            context = contextvars.copy_context()  # the job's log records carry the submitting request's id
            thread = threading.Thread(target=context.run, args=(self._run, job_id, source, collection, load_items),
                                      name=f"reindex-{collection.name}", daemon=True)
            self._threads[job_id] = thread
        store.prune(self.settings.keep_jobs)
        thread.start()
        logger.info("job %s: re-index %r from %s", job_id, collection.name, source)
        return self.status(job_id)

    def status(self, job_id: str) -> JobStatus:
        """The job's state; 404 if unknown (or forgotten)."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return job

    @contextmanager
    def none_running(self, collection: str) -> Iterator[None]:
        """Hold off new jobs on ``collection`` for the block; 409 if one is running now."""
        with self._lock:
            running = self._active.get(collection)
            if running is not None:
                raise JobConflictError(f"a re-index job for {collection!r} is running; wait for it to finish",
                                       details={"job_id": running})
            yield

    def last_finished(self) -> dict[str, LastReindex]:
        """Collection -> its last finished re-index job."""
        return self.store.last_finished()

    def forget_collection(self, collection: str) -> None:
        """Forget the finished jobs of a removed collection."""
        self.store.forget_collection(collection)

    def counts_by_state(self) -> dict[str, int]:
        """How many remembered jobs are in each state."""
        return self.store.counts_by_state()

    def _on_failure(self, job_id: str) -> Callable[[str, str], None]:
        def record(item_id: str, reason: str) -> None:
            failed = self.store.add_failure(job_id, item_id, reason)
            logger.warning("job %s: item %s failed: %s", job_id, item_id, reason)
            if failed > self.settings.job_max_failures:
                raise TooManyFailuresError(f"{failed} items failed, more than the {self.settings.job_max_failures} "
                                           "allowed (ARCSEARCH_JOB_MAX_FAILURES); see 'failures'")
        return record

    def _give_way_to_queries(self, collection: LoadedCollection) -> Callable[[], object] | None:
        """Before each embedding batch, wait up to ``job_yield_ms`` while the collection answers queries:
        on shared cores a search then waits for at most one job batch, not for a run of them."""
        wait_s = self.settings.job_yield_ms / 1000.0
        if wait_s <= 0:
            return None
        return lambda: collection.batcher is None or collection.batcher.wait_idle(wait_s)

    def _run(self, job_id: str, source: str, collection: LoadedCollection, load_items: ItemLoader) -> None:
        store = self.store
        store.update(job_id, status="running", started_at=now())
        staged = None
        try:
            loaded = load_items()
            items, bad_rows = (loaded.items, loaded.failures) if isinstance(loaded, LoadedItems) else (loaded, [])
            store.update(job_id, total=len(items) + len(bad_rows))
            on_failure = self._on_failure(job_id)
            for item_id, reason in bad_rows:
                on_failure(item_id, reason)
            if not items:
                raise IndexBuildError(f"no readable item in the source ({len(bad_rows)} bad rows; see 'failures')")
            skip = len(bad_rows)
            snapshot = collection.snapshot
            factory = (snapshot.store.manifest.factory if snapshot.store is not None
                       else collection.info.index_factory or self.settings.index_factory)
            built, _ = build_store(collection.embedder, items, factory=factory, batch_size=self.settings.batch_size,
                                   source=source, show_progress=False, on_failure=on_failure,
                                   progress=lambda done, total: store.update(job_id, done=done + skip,
                                                                             total=total + skip),
                                   before_batch=self._give_way_to_queries(collection))
            root = self.settings.collections_dir
            staged = staging_dir(root, collection.name)
            built.save(staged)
            version = publish_version(root, collection.name, staged)
            live = IndexStore.load(collection_dir(root, collection.name) / VERSIONS_DIR / version,
                                   search_params=self.settings.search_params)
            with self._lock:
                collection.swap(live, version)
                store.update(job_id, status="succeeded", version=version, finished_at=now(), num_items=len(live))
            logger.info("job %s: %r now serves version %s (%d items)", job_id, collection.name, version, len(live))
        except Exception as exc:  # a job reports every failure in its state instead of crashing a thread
            logger.exception("job %s failed", job_id)
            store.update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=now())
        finally:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)  # only still there if publishing failed
            with self._lock:
                self._active.pop(collection.name, None)
                self._threads.pop(job_id, None)

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for running jobs (at shutdown); unfinished ones leave no live version."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout_s)
