"""What the domain reads of the service's settings, as protocols: the edge's ``Settings`` satisfies them
without the domain importing it, and a test may pass any object with these attributes.

Read-only properties, so that a plain attribute, a pydantic field or a property all fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import SecretStr

from arcsearch.service.core.batching import BatchObserver
from arcsearch.service.core.querying import StageObserver

if TYPE_CHECKING:
    from arcsearch.index.collections import Backend
    from arcsearch.index.milvus_store import Consistency


class RootSettings(Protocol):
    """The folders below which paths are shown to clients relative (``paths.settings_roots``)."""

    @property
    def data_root(self) -> Path: ...

    @property
    def collections_dir(self) -> Path: ...


class IndexSettings(RootSettings, Protocol):
    """How indexes are searched and SQLite files written, by collections and jobs alike."""

    @property
    def search_params(self) -> str: ...

    @property
    def sqlite_busy_timeout_s(self) -> float: ...


class RegistrySettings(IndexSettings, Protocol):
    """How collections load and answer queries."""

    @property
    def device(self) -> str: ...

    @property
    def verify_embedder_hash(self) -> bool: ...

    @property
    def torch_threads(self) -> int: ...

    @property
    def torch_parallel_min_batch(self) -> int: ...

    @property
    def faiss_threads(self) -> int: ...

    @property
    def faiss_parallel_min_batch(self) -> int: ...

    @property
    def batch_max_size(self) -> int: ...

    @property
    def batch_max_wait_ms(self) -> float: ...

    @property
    def index_backend(self) -> Backend: ...

    @property
    def milvus_uri(self) -> str: ...

    @property
    def milvus_token(self) -> SecretStr: ...

    @property
    def milvus_consistency(self) -> Consistency: ...

    @property
    def milvus_ef(self) -> int: ...


class JobSettings(IndexSettings, Protocol):
    """How re-index jobs run and are remembered."""

    @property
    def jobs_db_path(self) -> Path: ...

    @property
    def keep_jobs(self) -> int: ...

    @property
    def job_max_failures(self) -> int: ...

    @property
    def job_yield_ms(self) -> float: ...

    @property
    def index_factory(self) -> str: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def reindex_workers(self) -> int: ...

    @property
    def reindex_shard_items(self) -> int: ...


class Observers(Protocol):
    """Where a collection reports its micro-batches and query stages (the edge's metrics)."""

    def batch_observer(self, collection: str) -> BatchObserver: ...

    def stage_observer(self, collection: str) -> StageObserver: ...
