"""Re-index jobs: build a new index version in a background thread, publish it, swap it in.

At most one job per collection runs at a time (a second one is refused with 409). Queries keep
using the old index until the new version is published, loaded and swapped in; the swap and the
job's ``succeeded`` state change together, under one lock.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from index.build import CorpusItem, build_store
from index.collections import VERSIONS_DIR, collection_dir, publish_version, staging_dir
from index.store import IndexStore
from service.errors import JobConflictError, JobNotFoundError
from service.registry import LoadedCollection
from service.schemas import JobProgress, JobState, JobStatus
from service.settings import Settings

logger = logging.getLogger(__name__)

ItemLoader = Callable[[], Sequence[CorpusItem]]


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Job:
    """Mutable state of one re-index job; read it through ``JobManager.status``."""

    job_id: str
    collection: str
    source: str
    status: JobState = "queued"
    done: int = 0
    total: int = 0
    error: str | None = None
    version: str | None = None
    num_items: int | None = None
    skipped: int | None = None
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None

    def to_schema(self) -> JobStatus:
        return JobStatus(job_id=self.job_id, collection=self.collection, status=self.status,
                         progress=JobProgress(done=self.done, total=self.total), error=self.error,
                         version=self.version, num_items=self.num_items, skipped=self.skipped,
                         created_at=self.created_at, started_at=self.started_at, finished_at=self.finished_at)


class JobManager:
    """Starts re-index jobs in threads and remembers the last ``settings.keep_jobs`` of them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._active: dict[str, str] = {}  # collection -> running job id
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def submit(self, collection: LoadedCollection, load_items: ItemLoader, *, source: str) -> JobStatus:
        """Queue a job that indexes ``load_items()`` into ``collection``; 409 if one is already running."""
        with self._lock:
            running = self._active.get(collection.name)
            if running is not None:
                raise JobConflictError(f"a re-index job for {collection.name!r} is already running",
                                       details={"job_id": running})
            job = Job(job_id=secrets.token_hex(8), collection=collection.name, source=source)
            self._jobs[job.job_id] = job
            self._active[collection.name] = job.job_id
            while len(self._jobs) > self.settings.keep_jobs:
                oldest = next(iter(self._jobs))
                if oldest in self._active.values():
                    break
                self._jobs.pop(oldest)
            thread = threading.Thread(target=self._run, args=(job, collection, load_items),
                                      name=f"reindex-{collection.name}", daemon=True)
            self._threads[job.job_id] = thread
            status = job.to_schema()
        thread.start()
        logger.info("job %s: re-index %r from %s", job.job_id, collection.name, source)
        return status

    def status(self, job_id: str) -> JobStatus:
        """The job's state; 404 if unknown (or forgotten)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFoundError(f"no job {job_id!r}")
            return job.to_schema()

    def counts_by_state(self) -> dict[str, int]:
        """How many remembered jobs are in each state."""
        with self._lock:
            states = [job.status for job in self._jobs.values()]
        return {state: states.count(state) for state in set(states)}

    def _progress(self, job: Job) -> Callable[[int, int], None]:
        def update(done: int, total: int) -> None:
            with self._lock:
                job.done, job.total = done, total
        return update

    def _run(self, job: Job, collection: LoadedCollection, load_items: ItemLoader) -> None:
        with self._lock:
            job.status, job.started_at = "running", _now()
        staged = None
        try:
            items = load_items()
            with self._lock:
                job.total = len(items)
            snapshot = collection.snapshot
            factory = snapshot.store.manifest.factory if snapshot.store else self.settings.index_factory
            store, corpus = build_store(collection.embedder, items, factory=factory,
                                        batch_size=self.settings.batch_size, source=job.source,
                                        progress=self._progress(job), show_progress=False)
            root = self.settings.collections_dir
            staged = staging_dir(root, collection.name)
            store.save(staged)
            version = publish_version(root, collection.name, staged)
            live = IndexStore.load(collection_dir(root, collection.name) / VERSIONS_DIR / version,
                                   search_params=self.settings.search_params)
            with self._lock:
                collection.swap(live, version)
                job.status, job.version, job.finished_at = "succeeded", version, _now()
                job.num_items, job.skipped = len(live), corpus.skipped
            logger.info("job %s: %r now serves version %s (%d items)", job.job_id, collection.name, version,
                        len(live))
        except Exception as exc:  # a job reports every failure in its state instead of crashing a thread
            logger.exception("job %s failed", job.job_id)
            with self._lock:
                job.status, job.error, job.finished_at = "failed", f"{type(exc).__name__}: {exc}", _now()
        finally:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)  # only still there if publishing failed
            with self._lock:
                self._active.pop(collection.name, None)
                self._threads.pop(job.job_id, None)

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for running jobs (at shutdown); unfinished ones leave no live version."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout_s)
