"""The engines of the peers benchmark, each reached the way its users reach it; ids are document row numbers.

- ``ArcsearchHttp``: a collection built from the vectors by the index layer (IndexStore.build, published as a
  collection version, its embedder an exported text embedder bundle), served by ``arcsearch serve`` on 127.0.0.1
  and searched with ``POST /v1/collections/{name}/search {"vector": [...], "k": k}``. Where the collection's index
  lives is an ``ArcsearchBackend``: ``FaissBackend`` (the prebuilt bundle, published) or ``MilvusBackend``
  (bench/peer_databases.py: a Milvus server started for it, the collection built in it by MilvusStore.create).
- ``InProcessFaiss``: plain ``faiss.Index.search`` on the very index file arcsearch serves: the limit.
- ``ChromaServer`` and ``MilvusServer`` (bench/peer_databases.py): the databases' own servers and clients.

HNSW graphs are built alike everywhere: M = 32 links, efConstruction = 40 (FAISS's ``HNSW32`` as IndexStore
builds it). ``param_name`` is the search parameter the benchmark raises until recall@k reaches its target
(None: exact search); ``set_param`` applies a value to every client opened afterwards. ``prior_build_s`` (where
present) is build work done before ``build`` on the engine's behalf: the shared FAISS bundle.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faiss
import httpx
import numpy as np

from arcsearch.index.bundle import read_embedder_manifest
from arcsearch.index.collections import create_collection, publish_version, staging_dir
from arcsearch.index.items import ItemRecord
from arcsearch.index.store import INDEX_FILE, IndexStore
from bench.peer_servers import PeerUnavailableError, tree_rss_bytes
from bench.server_process import server_process

COLLECTION = "bench"
HNSW_M = 32
EF_CONSTRUCTION = 40


class PeerEngine(Protocol):
    """A search engine under test, searched through clients (one per load thread)."""

    name: str
    param_name: str | None

    def build(self, vectors: np.ndarray) -> None: ...

    def set_param(self, value: int) -> None: ...

    def client(self) -> contextlib.AbstractContextManager[Any]: ...

    def search(self, client: Any, query: np.ndarray, k: int) -> list[int]: ...

    def rss_bytes(self) -> int | None: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def faiss_param_name(index: faiss.Index) -> str | None:
    """The search parameter that trades speed for recall in ``index`` (efSearch, nprobe), None if exact."""
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIDMap | faiss.IndexIDMap2):
        inner = faiss.downcast_index(inner.index)
    if isinstance(inner, faiss.IndexHNSW):
        return "efSearch"
    return "nprobe" if isinstance(inner, faiss.IndexIVF) else None


@dataclass
class FaissBundle:
    """An index bundle built once from the vectors, served by arcsearch and read by the in-process reference."""

    folder: Path
    factory: str
    build_s: float
    param_name: str | None


def build_faiss_bundle(vectors: np.ndarray, folder: Path, factory: str, *, embedder_dir: Path) -> FaissBundle:
    """IndexStore.build + save of (n, d) ``vectors`` (external ids "0".."n-1") into ``folder``, timed."""
    started = time.perf_counter()
    records = [ItemRecord(external_id=str(i), label="doc") for i in range(len(vectors))]
    store = IndexStore.build(vectors, records, modality="text", factory=factory,
                             embedder_sha256=read_embedder_manifest(embedder_dir).weights_sha256)
    store.save(folder)
    return FaissBundle(folder, factory, time.perf_counter() - started, faiss_param_name(store.index))


class FaissBackend:
    """arcsearch's own FAISS backend: the prebuilt bundle published as the collection's version before the server
    starts; the search parameter goes to the server as ARCSEARCH_SEARCH_PARAMS (so a new value restarts it)."""

    name = "faiss"

    def __init__(self, bundle: FaissBundle, *, embedder_dir: Path) -> None:
        self.bundle = bundle
        self.embedder_dir = embedder_dir
        self.label = f"FAISS {bundle.factory}"
        self.param_name = bundle.param_name
        self.prior_build_s = bundle.build_s

    def before_start(self, collections_dir: Path, vectors: np.ndarray) -> dict[str, str]:
        """Publish the bundle (built from ``vectors``) as the collection's live version; the server's extra
        environment (none)."""
        create_collection(collections_dir, COLLECTION, self.embedder_dir, index_factory=self.bundle.factory)
        staged = staging_dir(collections_dir, COLLECTION)
        shutil.copytree(self.bundle.folder, staged)
        publish_version(collections_dir, COLLECTION, staged)
        return {}

    def after_start(self, base: str, vectors: np.ndarray) -> None:
        """Nothing: the collection was published before the server started."""

    def param_env(self, value: int | None) -> dict[str, str]:
        return {"ARCSEARCH_SEARCH_PARAMS": f"{self.param_name}={value}" if value is not None else ""}

    def info(self) -> dict[str, Any]:
        return {"factory": self.bundle.factory, "faiss_build_s": self.bundle.build_s,
                "build_includes": "IndexStore.build + save, publish, server start (it loads the embedder too)"}

    def close(self) -> None:
        """Nothing to stop: the index lives in the server process."""


class ArcsearchBackend(Protocol):
    """Where the served collection's index lives. ``before_start`` prepares it from ``vectors`` (row i = id "i")
    and returns the server's extra environment; ``after_start`` fills it through the running server if it must;
    ``param_env`` is the environment that sets the search parameter (a change restarts the server)."""

    name: str
    label: str
    param_name: str | None
    prior_build_s: float

    def before_start(self, collections_dir: Path, vectors: np.ndarray) -> dict[str, str]: ...

    def after_start(self, base: str, vectors: np.ndarray) -> None: ...

    def param_env(self, value: int | None) -> dict[str, str]: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


BACKEND_MISSING = ("not available: this bench has no {backend} ArcsearchBackend (bench.peers.arcsearch_backends "
                   "lists the ones it has)")


class ArcsearchHttp:
    """arcsearch's service over HTTP on loopback, its collection on ``backend``; ``set_param`` restarts the server
    with the backend's ``param_env``. ``env`` is added to the server's environment (a variant of its settings)."""

    def __init__(self, workdir: Path, backend: ArcsearchBackend | None, *, env: dict[str, str] | None = None,
                 missing: str = "") -> None:
        if backend is None:
            raise PeerUnavailableError(BACKEND_MISSING.format(backend=missing or "requested"))
        self.backend = backend
        self.env = env or {}
        given = ", ".join(f"{key}={value}" for key, value in self.env.items())
        self.name = f"arcsearch HTTP, {backend.label}" + (f" ({given})" if given else "")
        self.workdir = workdir / f"arcsearch-{backend.name}{'-env' if self.env else ''}"
        self.collections_dir = self.workdir / "collections"
        self.param_name = backend.param_name
        self.param: int | None = None
        self.prior_build_s = backend.prior_build_s
        self.backend_env: dict[str, str] = {}
        self.stack = contextlib.ExitStack()
        self.base = ""
        self.pid = 0

    def build(self, vectors: np.ndarray) -> None:
        """Prepare the backend, start the server on it, and let the backend fill it if it must."""
        self.backend_env = self.backend.before_start(self.collections_dir, vectors)
        self._restart()
        self.backend.after_start(self.base, vectors)

    def _restart(self) -> None:
        self.stack.close()
        env = {**self.backend_env, **self.env, **self.backend.param_env(self.param)}
        self.base, process = self.stack.enter_context(server_process(self.collections_dir, self.workdir, env=env))
        self.pid = process.pid

    def set_param(self, value: int) -> None:
        if value != self.param:
            self.param = value
            self._restart()

    def client(self) -> contextlib.AbstractContextManager[httpx.Client]:
        return httpx.Client(base_url=self.base, timeout=30)

    def search(self, client: httpx.Client, query: np.ndarray, k: int) -> list[int]:
        response = client.post(f"/v1/collections/{COLLECTION}/search", json={"vector": query.tolist(), "k": k})
        response.raise_for_status()
        return [int(hit["id"]) for hit in response.json()["results"]]

    def rss_bytes(self) -> int | None:
        return tree_rss_bytes(self.pid)

    def info(self) -> dict[str, Any]:
        return {"route": f"POST /v1/collections/{COLLECTION}/search", "backend": self.backend.name,
                **self.backend.info(), "server_env": self.env,
                "rss_includes": "the server process: torch, the text embedder and the index"}

    def close(self) -> None:
        self.stack.close()
        self.backend.close()


class InProcessFaiss:
    """``faiss.read_index`` of the bundle arcsearch serves, searched one query per call in this process, with one
    OpenMP thread: FAISS's default (a thread per core) makes a single-query HNSW search wait for a second core
    (p50 16 ms instead of 1 ms at 100k vectors on the loaded 2-core development machine)."""

    def __init__(self, bundle: FaissBundle) -> None:
        self.name = f"FAISS {bundle.factory} in-process (limit)"
        self.bundle = bundle
        self.param_name = bundle.param_name
        self.prior_build_s = bundle.build_s
        self.index: faiss.Index | None = None

    def build(self, vectors: np.ndarray) -> None:
        faiss.omp_set_num_threads(1)  # process-wide: the bench runs no other FAISS search
        self.index = faiss.read_index(str(self.bundle.folder / INDEX_FILE))

    def set_param(self, value: int) -> None:
        faiss.ParameterSpace().set_index_parameters(self.index, f"{self.param_name}={value}")

    def client(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def search(self, client: None, query: np.ndarray, k: int) -> list[int]:
        return [int(i) for i in self.index.search(query[None, :], k)[1][0]]

    def rss_bytes(self) -> int | None:
        return None

    def info(self) -> dict[str, Any]:
        return {"index_file": str(self.bundle.folder / INDEX_FILE), "build_includes": "IndexStore.build + save",
                "openmp_threads": 1}

    def close(self) -> None:
        self.index = None
