"""All collections a running service holds: loaded at startup, created and removed through the API."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

from arcsearch.index.bundle import BundleError
from arcsearch.index.chooser import IndexBudget
from arcsearch.index.collection_admin import CollectionExistsError as IndexCollectionExistsError
from arcsearch.index.collection_admin import new_collection, purge_deleted, remove_collection
from arcsearch.index.collections import (
    COLLECTION_FILE,
    Backend,
    CollectionError,
    CollectionInfo,
    collection_dir,
    list_collections,
    read_collection,
)
from arcsearch.index.embedder import ThreadPolicy
from arcsearch.index.threads import SearchThreads
from arcsearch.service.core.collection import load_collection
from arcsearch.service.core.config import Observers, RegistrySettings
from arcsearch.service.core.embedding import SerialEmbedder
from arcsearch.service.core.errors import (
    BackendRefusedError,
    BackendUnavailableError,
    CollectionExistsError,
    CollectionNotFoundError,
    CollectionUnavailableError,
    NotReadyError,
    WrongModalityError,
)
from arcsearch.service.core.milvus_collection import (
    MilvusCollection,
    create_milvus_store,
    drop_milvus_store,
    load_milvus_collection,
)
from arcsearch.service.core.milvus_link import MilvusLink
from arcsearch.service.core.paths import display_path, scrub_paths, settings_roots
from arcsearch.service.core.records import CollectionState
from arcsearch.service.core.served import ServedCollection

logger = logging.getLogger(__name__)

FAISS_REFUSED = ("a FAISS collection is served by one process, and this one shares its collections folder with "
                 "others (ARCSEARCH_INDEX_BACKEND=milvus); serve it from a process with the faiss backend")


@dataclass(frozen=True)
class LoadFailure:
    """A collection that could not be loaded, and why."""

    info: CollectionInfo
    error: str


class Registry:
    """All collections of ``settings.collections_dir``; filled once by ``load_all`` (in a thread)."""

    def __init__(self, settings: RegistrySettings, *, metrics: Observers | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.collections: dict[str, ServedCollection] = {}
        self.failures: dict[str, LoadFailure] = {}
        self.pending: list[CollectionInfo] = []
        self.list_error: str | None = None
        self.embedders: dict[str, SerialEmbedder] = {}  # by weights hash: collections of one embedder share it
        self.checks: dict[str, Callable[[], str | None]] = {}  # other parts the service needs (``*name``) -> problem
        self.roots = settings_roots(settings)  # paths shown to clients are relative to these
        self._ready = threading.Event()
        self._admin_lock = threading.Lock()  # one collection created or removed at a time
        self.milvus = MilvusLink(settings)

    @property
    def shares_folder(self) -> bool:
        """Whether other processes may serve this collections folder too (ARCSEARCH_INDEX_BACKEND=milvus): then
        this one serves only Milvus collections, and finds those other processes create or remove."""
        return self.settings.index_backend == "milvus"

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def problems(self) -> dict[str, str]:
        """Collection name (``*`` for the folder itself, ``*name`` for one of ``checks``) -> why it is not served."""
        problems = {name: failure.error for name, failure in self.failures.items()}
        problems |= {name: problem for name, check in self.checks.items() if (problem := check())}
        return problems | ({"*": self.list_error} if self.list_error else {})

    def load_all(self) -> None:
        """Load every collection; a broken one is recorded in ``failures`` and never served."""
        root = self.settings.collections_dir
        try:
            removed = purge_deleted(root)
            if removed:
                logger.warning("finished removing collections a stop interrupted: %s", ", ".join(removed))
            self.pending = list_collections(root)
        except (CollectionError, OSError) as exc:
            logger.error("cannot list collections in %s: %s", root, exc)
            self.list_error = scrub_paths(str(exc), self.roots)
        if not self.pending and self.list_error is None:
            logger.warning("no collections in %s", root)
        for info in list(self.pending):
            try:
                self.collections[info.name] = self._load(info)
            except Exception as exc:  # any broken bundle must leave the others served
                logger.error("collection %r is not served: %s", info.name, exc)
                self.failures[info.name] = LoadFailure(info, scrub_paths(f"{type(exc).__name__}: {exc}", self.roots))
            self.pending = [p for p in self.pending if p.name != info.name]
        self._ready.set()

    def _load(self, info: CollectionInfo) -> ServedCollection:
        shown = info.model_copy(update={"embedder_origin": display_path(info.embedder_origin, self.roots)})
        threads = ThreadPolicy(self.settings.torch_threads, self.settings.torch_parallel_min_batch)
        loaded: ServedCollection
        if info.backend == "milvus":
            loaded = load_milvus_collection(self.settings.collections_dir, shown, self.milvus.client(),
                                            device=self.settings.device, embedders=self.embedders, threads=threads,
                                            verify_hash=self.settings.verify_embedder_hash,
                                            consistency=self.settings.milvus_consistency, ef=self.settings.milvus_ef)
        elif self.shares_folder:
            raise BackendRefusedError(FAISS_REFUSED)
        else:
            loaded = load_collection(self.settings.collections_dir, shown, device=self.settings.device,
                                     search_params=self.settings.search_params,
                                     verify_hash=self.settings.verify_embedder_hash, embedders=self.embedders,
                                     threads=threads, busy_timeout_s=self.settings.sqlite_busy_timeout_s)
        loaded.start_batching(max_batch=self.settings.batch_max_size, max_wait_ms=self.settings.batch_max_wait_ms,
                              observe=self.metrics.batch_observer(info.name) if self.metrics else None,
                              observe_stage=self.metrics.stage_observer(info.name) if self.metrics else None,
                              search_threads=SearchThreads(self.settings.faiss_threads,
                                                           self.settings.faiss_parallel_min_batch))
        return loaded

    def create(self, name: str, embedder_dir: Path, factory: str, *, budget: IndexBudget | None = None,
               backend: Backend | None = None) -> ServedCollection:
        """Create, load and serve a new collection (no restart) in ``backend`` (default ARCSEARCH_INDEX_BACKEND);
        CollectionExistsError if the name is taken.

        Raises index errors for a bad embedder bundle (BundleError, ValueError) or factory (IndexStoreError),
        BackendUnavailableError if Milvus is asked for and cannot be reached; a collection whose embedder (or
        Milvus collection) then fails to load is removed again.
        """
        if not self.ready:
            raise NotReadyError("the service is still loading its collections; retry shortly")
        backend = backend or self.settings.index_backend
        if backend == "faiss" and self.shares_folder:
            raise BackendRefusedError(FAISS_REFUSED)
        client = self.milvus.client() if backend == "milvus" else None  # no URI, no folder made
        with self._admin_lock:
            if name in self.collections or name in self.failures:
                raise CollectionExistsError(f"collection {name!r} already exists")
            try:
                info = new_collection(self.settings.collections_dir, name, embedder_dir, factory=factory,
                                      budget=budget, backend=backend)
            except IndexCollectionExistsError as exc:
                raise CollectionExistsError(str(exc)) from None
            if client is not None:
                try:
                    create_milvus_store(client, info)
                except (CollectionExistsError, BackendUnavailableError):
                    remove_collection(self.settings.collections_dir, name)
                    raise
            try:
                loaded = self._load(info)
            except Exception as exc:  # whatever the embedder's loader raises, leave no half-made collection
                if client is not None:
                    drop_milvus_store(client, name)
                remove_collection(self.settings.collections_dir, name)
                raise BundleError(f"the embedder bundle does not load: {type(exc).__name__}: "
                                  f"{scrub_paths(str(exc), self.roots)}") from exc
            self.collections[name] = loaded
        logger.info("collection %r created (%s, %d-d, factory %s)", name, info.modality, info.embedding_dim, factory)
        return loaded

    def delete(self, name: str, guard: AbstractContextManager[object] | None = None) -> None:
        """Unload collection ``name`` (CollectionNotFoundError if unknown), then remove its folder.

        ``guard`` is held while it leaves the registry (e.g. "no re-index job runs on it"); queries already
        queued are answered first, and its files are removed only once nothing in the service uses them.
        """
        with self._admin_lock:
            if name not in self.failures:
                self.get(name)  # not found / not ready
            with guard if guard is not None else nullcontext():
                unloaded = self.collections.pop(name, None)
                self.failures.pop(name, None)
            if unloaded is not None:
                unloaded.close()
            if read_collection(self.settings.collections_dir, name).backend == "milvus":
                drop_milvus_store(self.milvus.client(), name)
            remove_collection(self.settings.collections_dir, name)

    def close(self) -> None:
        """Stop the micro-batchers (queued queries are answered first)."""
        for collection in list(self.collections.values()):
            collection.close()
        self.milvus.close()

    def _discover(self, name: str) -> bool:
        """Whether Milvus collection ``name`` exists in the folder (one that another process created is loaded
        now); a loaded one whose folder another process removed is unloaded."""
        try:
            exists = (collection_dir(self.settings.collections_dir, name) / COLLECTION_FILE).is_file()
        except CollectionError:
            return False
        loaded = self.collections.get(name)
        if not exists:
            if isinstance(loaded, MilvusCollection):
                logger.info("collection %r was removed by another process", name)
                self.collections.pop(name, None)
                loaded.close()
            return False
        if loaded is None and name not in self.failures:
            with self._admin_lock:
                if name not in self.collections:
                    self._load_discovered(name)
        return True

    def _load_discovered(self, name: str) -> None:
        """Load a collection another process created (call with ``_admin_lock`` held)."""
        try:
            info = read_collection(self.settings.collections_dir, name)
            if info.backend == "milvus":
                self.collections[name] = self._load(info)
                logger.info("collection %r, created by another process, is served now", name)
        except Exception as exc:  # half made by another process, or broken: not served, and not remembered
            logger.warning("collection %r is not served yet: %s", name, exc)
            raise CollectionUnavailableError(f"collection {name!r} cannot be served yet: "
                                             f"{scrub_paths(f'{type(exc).__name__}: {exc}', self.roots)}") from None

    def _discover_all(self) -> None:
        """``_discover`` every collection of the folder and every one loaded."""
        try:
            names = {info.name for info in list_collections(self.settings.collections_dir)}
        except (CollectionError, OSError) as exc:
            logger.warning("cannot list collections: %s", exc)
            return
        for name in sorted(names | set(self.collections)):
            with suppress(CollectionUnavailableError):
                self._discover(name)

    def get(self, name: str) -> ServedCollection:
        """The named collection; NotReadyError while loading, CollectionUnavailableError if it failed to load,
        CollectionNotFoundError if unknown."""
        if not self.ready:
            raise NotReadyError("the service is still loading its collections; retry shortly")
        if name in self.failures:
            raise CollectionUnavailableError(f"collection {name!r} could not be loaded: "
                                             f"{self.failures[name].error}")
        if self.shares_folder and not self._discover(name):
            self.collections.pop(name, None)
        if name not in self.collections:
            raise CollectionNotFoundError(f"no collection {name!r}; see GET /v1/collections",
                                          details={"available": sorted(self.collections)})
        return self.collections[name]

    def resolve(self, name: str | None, modality: str) -> ServedCollection:
        """The named collection (checked to hold ``modality``), or the default one of that modality."""
        if name is None:
            name = self.default_name(modality)
        collection = self.get(name)
        if collection.info.modality != modality:
            raise WrongModalityError(f"collection {name!r} holds {collection.info.modality}s, not {modality}s; "
                                     f"query it with POST /v1/collections/{name}/search")
        return collection

    def default_name(self, modality: str) -> str:
        """``images``/``texts`` if loaded with that modality, else the first such collection by name."""
        if not self.ready:
            raise NotReadyError("the service is still loading its collections; retry shortly")
        names = sorted(n for n, c in self.collections.items() if c.info.modality == modality)
        if not names:
            raise CollectionNotFoundError(f"no {modality} collection is loaded")
        preferred = f"{modality}s"
        return preferred if preferred in names else names[0]

    def summaries(self) -> list[CollectionState]:
        """One summary per collection: loaded, still loading, or failed."""
        if self.shares_folder and self.ready:
            self._discover_all()
        summaries = [c.summary() for c in list(self.collections.values())]
        summaries += [CollectionState(name=i.name, modality=i.modality, status="loading", dim=i.embedding_dim,
                                      embedder_sha256=i.embedder_sha256) for i in list(self.pending)]
        summaries += [CollectionState(name=f.info.name, modality=f.info.modality, status="error",
                                      dim=f.info.embedding_dim, embedder_sha256=f.info.embedder_sha256,
                                      error=f.error) for f in list(self.failures.values())]
        return sorted(summaries, key=lambda s: s.name)
