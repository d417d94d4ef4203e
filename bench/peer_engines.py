"""The engines of the peers benchmark, each reached the way its users reach it; ids are document row numbers.

- ``ArcsearchHttp``: a collection built from the vectors by the index layer (IndexStore.build, published as a
  collection version, its embedder an exported text embedder bundle), served by ``arcsearch serve`` on 127.0.0.1
  and searched with ``POST /v1/collections/{name}/search {"vector": [...], "k": k}``. ``backend="milvus"`` is the
  slot for the service's Milvus backend, which does not exist yet: it reports why, and is the one adapter to
  change once the service can create a collection in Milvus.
- ``InProcessFaiss``: plain ``faiss.Index.search`` on the very index file arcsearch serves: the limit.
- ``ChromaServer``: ``chroma run`` on loopback, ``chromadb.HttpClient``.
- ``MilvusServer``: Milvus standalone (``arcsearch.milvus_server``), ``pymilvus.MilvusClient``.

HNSW graphs are built alike everywhere: M = 32 links, efConstruction = 40 (FAISS's ``HNSW32`` as IndexStore
builds it). ``param_name`` is the search parameter the benchmark raises until recall@k reaches its target
(None: exact search); ``set_param`` applies a value to every client opened afterwards. ``prior_build_s`` (where
present) is build work done before ``build`` on the engine's behalf: the shared FAISS bundle.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import shutil
import time
from collections.abc import Iterator
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
from bench.peer_servers import PeerUnavailableError, chroma_server, tree_rss_bytes
from bench.server_process import server_process

COLLECTION = "bench"
HNSW_M = 32
EF_CONSTRUCTION = 40
MILVUS_INSERT_ROWS = 10_000  # 15 MiB of 384-d float32 per insert call, under gRPC's 64 MiB


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


class ArcsearchHttp:
    """arcsearch's service over HTTP on loopback; ``set_param`` restarts it with ARCSEARCH_SEARCH_PARAMS."""

    def __init__(self, workdir: Path, bundle: FaissBundle, *, embedder_dir: Path, backend: str = "faiss") -> None:
        if backend != "faiss":
            raise PeerUnavailableError(
                f"not yet available: the service has no {backend} backend yet (index/milvus_store.py is not "
                "wired into the service); once it is, this adapter creates the collection with that backend")
        self.bundle = bundle
        self.name = f"arcsearch HTTP, FAISS {bundle.factory}"
        self.workdir = workdir / f"arcsearch-{bundle.folder.name}"
        self.collections_dir = self.workdir / "collections"
        self.embedder_dir = embedder_dir
        self.param_name = bundle.param_name
        self.param: int | None = None
        self.prior_build_s = bundle.build_s
        self.stack = contextlib.ExitStack()
        self.base = ""
        self.pid = 0

    def build(self, vectors: np.ndarray) -> None:
        """Publish the prebuilt index as the collection's version, then start the server on it."""
        create_collection(self.collections_dir, COLLECTION, self.embedder_dir, index_factory=self.bundle.factory)
        staged = staging_dir(self.collections_dir, COLLECTION)
        shutil.copytree(self.bundle.folder, staged)
        publish_version(self.collections_dir, COLLECTION, staged)
        self._restart()

    def _restart(self) -> None:
        self.stack.close()
        params = f"{self.param_name}={self.param}" if self.param is not None else ""
        self.base, process = self.stack.enter_context(server_process(
            self.collections_dir, self.workdir, env={"ARCSEARCH_SEARCH_PARAMS": params}))
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
        return {"route": f"POST /v1/collections/{COLLECTION}/search", "factory": self.bundle.factory,
                "faiss_build_s": self.bundle.build_s,
                "build_includes": "IndexStore.build + save, publish, server start (it loads the embedder too)",
                "rss_includes": "the server process: torch, the text embedder and the index"}

    def close(self) -> None:
        self.stack.close()


class InProcessFaiss:
    """``faiss.read_index`` of the bundle arcsearch serves, searched one query per call in this process."""

    def __init__(self, bundle: FaissBundle) -> None:
        self.name = f"FAISS {bundle.factory} in-process (limit)"
        self.bundle = bundle
        self.param_name = bundle.param_name
        self.prior_build_s = bundle.build_s
        self.index: faiss.Index | None = None

    def build(self, vectors: np.ndarray) -> None:
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
        return {"index_file": str(self.bundle.folder / INDEX_FILE), "build_includes": "IndexStore.build + save"}

    def close(self) -> None:
        self.index = None


class ChromaServer:
    """``chroma run`` on 127.0.0.1 and one ``chromadb.HttpClient`` per load thread; HNSW, inner product. A changed
    ``ef_search`` is stored at once but used only once the server loads the index again (chromadb 1.5: an index
    already in its cache keeps the old value), so ``set_param`` restarts the server on the same folder."""

    name = "Chroma server"
    param_name = "hnsw ef_search"

    def __init__(self, workdir: Path) -> None:
        import chromadb  # noqa: F401 - unavailable here if the [bench] extra is missing

        self.path = workdir / "chroma"
        self.stack = contextlib.ExitStack()
        self.host, self.port, self.pid = "", 0, 0
        self._restart()

    def _restart(self) -> None:
        self.stack.close()
        self.host, self.port, self.pid = self.stack.enter_context(chroma_server(self.path))

    def _http_client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        return chromadb.HttpClient(host=self.host, port=self.port, settings=Settings(anonymized_telemetry=False))

    def build(self, vectors: np.ndarray) -> None:
        client = self._http_client()
        collection = client.create_collection(COLLECTION, embedding_function=None, configuration={"hnsw": {
            "space": "ip", "max_neighbors": HNSW_M, "ef_construction": EF_CONSTRUCTION}})
        step = int(client.get_max_batch_size())
        for start in range(0, len(vectors), step):
            stop = min(start + step, len(vectors))
            collection.add(ids=[str(i) for i in range(start, stop)], embeddings=vectors[start:stop])

    def set_param(self, value: int) -> None:
        self._http_client().get_collection(COLLECTION).modify(configuration={"hnsw": {"ef_search": value}})
        self._restart()

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        yield self._http_client().get_collection(COLLECTION)

    def search(self, client: Any, query: np.ndarray, k: int) -> list[int]:
        result = client.query(query_embeddings=query[None, :], n_results=k, include=["distances"])
        return [int(i) for i in result["ids"][0]]

    def rss_bytes(self) -> int | None:
        return tree_rss_bytes(self.pid)

    def info(self) -> dict[str, Any]:
        return {"server": f"chroma run --host 127.0.0.1 (chromadb {importlib.metadata.version('chromadb')})",
                "hnsw": {"max_neighbors": HNSW_M, "ef_construction": EF_CONSTRUCTION, "space": "ip"},
                "ef_search": "set with collection.modify, then the server restarted so that it applies"}

    def close(self) -> None:
        self.stack.close()


class MilvusServer:
    """Milvus standalone in a private network namespace behind a loopback relay; HNSW, inner product,
    Bounded consistency (Milvus's default; the data does not change while it is searched)."""

    name = "Milvus server (pymilvus)"
    param_name = "ef"

    def __init__(self, workdir: Path, *, bin_cache: Path) -> None:
        from pymilvus import MilvusClient

        from arcsearch.milvus_server import MilvusStartError, start_milvus

        try:
            self.server = start_milvus(workdir / "milvus", bin_cache=bin_cache)
        except MilvusStartError as exc:
            raise PeerUnavailableError(f"Milvus standalone cannot start: {exc}") from exc
        self.make_client = lambda: MilvusClient(uri=self.server.uri, timeout=60)
        self.admin = self.make_client()
        self.ef = 64

    def build(self, vectors: np.ndarray) -> None:
        """Insert, flush, build the HNSW index, wait until every row is indexed, load."""
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
        self.admin.create_collection(COLLECTION, schema=schema, consistency_level="Bounded")
        for start in range(0, len(vectors), MILVUS_INSERT_ROWS):
            stop = min(start + MILVUS_INSERT_ROWS, len(vectors))
            self.admin.insert(COLLECTION, [{"id": i, "vector": vectors[i].tolist()} for i in range(start, stop)])
        self.admin.flush(COLLECTION)
        index_params = self.admin.prepare_index_params()
        index_params.add_index("vector", index_type="HNSW", metric_type="IP",
                               params={"M": HNSW_M, "efConstruction": EF_CONSTRUCTION})
        self.admin.create_index(COLLECTION, index_params)
        self._wait_indexed(len(vectors))
        self.admin.load_collection(COLLECTION)

    def _wait_indexed(self, rows: int, *, timeout_s: float = 3600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            index = self.admin.describe_index(COLLECTION, self.admin.list_indexes(COLLECTION)[0])
            if int(index.get("indexed_rows", 0)) >= rows and int(index.get("pending_index_rows", 0)) == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"Milvus did not index {rows} rows within {timeout_s:.0f} s")

    def set_param(self, value: int) -> None:
        self.ef = value

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        client = self.make_client()
        try:
            yield client
        finally:
            client.close()

    def search(self, client: Any, query: np.ndarray, k: int) -> list[int]:
        result = client.search(COLLECTION, data=[query.tolist()], limit=k,
                               search_params={"metric_type": "IP", "params": {"ef": max(self.ef, k)}})
        return [int(hit["id"]) for hit in result[0]]

    def rss_bytes(self) -> int | None:
        return tree_rss_bytes(self.server.process.pid, skip_root=True)

    def info(self) -> dict[str, Any]:
        return {"server": f"Milvus standalone {importlib.metadata.version('milvus')} (PyPI milvus), pymilvus "
                          f"{importlib.metadata.version('pymilvus')}",
                "hnsw": {"M": HNSW_M, "efConstruction": EF_CONSTRUCTION, "metric": "IP"},
                "consistency": "Bounded",
                "reached_through": "arcsearch.milvus_server's loopback relay (one asyncio process)",
                "rss_includes": "the Milvus process (not the relay)"}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.admin.drop_collection(COLLECTION)
        with contextlib.suppress(Exception):
            self.admin.close()
        self.server.stop()
