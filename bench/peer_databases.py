"""The vector databases of the peers benchmark, each through its own server and client; ids are row numbers.

- ``ChromaServer``: ``chroma run`` on loopback (bench.peer_servers), ``chromadb.HttpClient``.
- ``MilvusServer``: Milvus standalone (``arcsearch.milvus_server``), ``pymilvus.MilvusClient``.
- ``MilvusBackend``: an ``ArcsearchBackend`` of bench.peer_engines.ArcsearchHttp: arcsearch's service on a Milvus
  standalone of its own, the collection built in it by ``MilvusStore.create`` (as ``arcsearch index --backend
  milvus`` builds one) before the server starts.

All build HNSW graphs as FAISS's HNSW32 does (HNSW_M, EF_CONSTRUCTION).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.peer_engines import COLLECTION, EF_CONSTRUCTION, HNSW_M, FaissBundle
from bench.peer_servers import PeerUnavailableError, chroma_server, tree_rss_bytes

MILVUS_INSERT_ROWS = 10_000  # 15 MiB of 384-d float32 per insert call, under gRPC's 64 MiB


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


def milvus_standalone(work_dir: Path, *, bin_cache: Path) -> Any:
    """A started ``arcsearch.milvus_server`` MilvusProcess; PeerUnavailableError if it cannot start here."""
    from arcsearch.milvus_server import MilvusStartError, start_milvus

    try:
        return start_milvus(work_dir, bin_cache=bin_cache)
    except MilvusStartError as exc:
        raise PeerUnavailableError(f"Milvus standalone cannot start: {exc}") from exc


def wait_indexed(client: Any, collection: str, rows: int, *, timeout_s: float = 3600.0) -> None:
    """Wait until Milvus has indexed ``rows`` rows of ``collection`` (its first index) and none is pending."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        index = client.describe_index(collection, client.list_indexes(collection)[0])
        if int(index.get("indexed_rows", 0)) >= rows and int(index.get("pending_index_rows", 0)) == 0:
            return
        time.sleep(0.5)
    raise TimeoutError(f"Milvus did not index {rows} rows of {collection} within {timeout_s:.0f} s")


@dataclass(frozen=True)
class MilvusIndex:
    """The Milvus index built alike the FAISS one: its type, build params, and the search param to tune."""

    index_type: str
    params: dict[str, int]
    param_name: str


def milvus_index(factory: str) -> MilvusIndex:
    """HNSW (M 32, efConstruction 40) for a FAISS HNSW factory; IVF_FLAT with as many lists for ``IVF<n>,Flat``."""
    lists = re.fullmatch(r"IVF(\d+),Flat", factory)
    if lists:
        return MilvusIndex("IVF_FLAT", {"nlist": int(lists.group(1))}, "nprobe")
    return MilvusIndex("HNSW", {"M": HNSW_M, "efConstruction": EF_CONSTRUCTION}, "ef")


class MilvusServer:
    """Milvus standalone in a private network namespace behind a loopback relay; HNSW (or IVF_FLAT, alike the FAISS
    index), inner product, Bounded consistency (Milvus's default; the data does not change while it is searched)."""

    name = "Milvus server (pymilvus)"

    def __init__(self, workdir: Path, *, bin_cache: Path, index: MilvusIndex | None = None) -> None:
        from pymilvus import MilvusClient

        self.server = milvus_standalone(workdir / "milvus", bin_cache=bin_cache)
        self.make_client = lambda: MilvusClient(uri=self.server.uri, timeout=60)
        self.admin = self.make_client()
        self.index = index or milvus_index("HNSW32")
        self.param_name = self.index.param_name
        self.value = 64

    def build(self, vectors: np.ndarray) -> None:
        """Insert, flush, build the index, wait until every row is indexed, load."""
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
        index_params.add_index("vector", index_type=self.index.index_type, metric_type="IP",
                               params=self.index.params)
        self.admin.create_index(COLLECTION, index_params)
        wait_indexed(self.admin, COLLECTION, len(vectors))
        self.admin.load_collection(COLLECTION)

    def set_param(self, value: int) -> None:
        self.value = value

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        client = self.make_client()
        try:
            yield client
        finally:
            client.close()

    def search(self, client: Any, query: np.ndarray, k: int) -> list[int]:
        result = client.search(COLLECTION, data=[query.tolist()], limit=k,
                               search_params={"metric_type": "IP", "params": self._search_params(k)})
        return [int(hit["id"]) for hit in result[0]]

    def _search_params(self, k: int) -> dict[str, int]:
        return {"ef": max(self.value, k)} if self.param_name == "ef" else {self.param_name: self.value}

    def rss_bytes(self) -> int | None:
        return tree_rss_bytes(self.server.process.pid, skip_root=True)

    def info(self) -> dict[str, Any]:
        return {"server": f"Milvus standalone {importlib.metadata.version('milvus')} (PyPI milvus), pymilvus "
                          f"{importlib.metadata.version('pymilvus')}",
                "index": {"type": self.index.index_type, **self.index.params, "metric": "IP"},
                "consistency": "Bounded",
                "reached_through": "arcsearch.milvus_server's loopback relay (one asyncio process)",
                "rss_includes": "the Milvus process (not the relay)"}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.admin.drop_collection(COLLECTION)
        with contextlib.suppress(Exception):
            self.admin.close()
        self.server.stop()


class MilvusBackend:
    """arcsearch's Milvus backend for ArcsearchHttp: a Milvus standalone of its own; before the server starts, the
    collection folder (backend milvus) and its Milvus collection, built by ``MilvusStore.create`` from the vectors
    with the HNSW graph the Milvus peer builds, indexed and loaded. The server reads with ``consistency``
    (ARCSEARCH_MILVUS_CONSISTENCY; Bounded by default, as the Milvus peer) and HNSW ``ef`` ARCSEARCH_MILVUS_EF
    (a new value restarts it)."""

    param_name = "ef"
    prior_build_s = 0.0

    def __init__(self, bundle: FaissBundle, *, embedder_dir: Path, workdir: Path, bin_cache: Path,
                 consistency: str = "Bounded") -> None:
        self.factory = bundle.factory
        self.embedder_dir = embedder_dir
        self.work_dir = workdir / f"milvus-arcsearch-{consistency.lower()}"
        self.bin_cache = bin_cache
        self.consistency = consistency
        self.name = "milvus" if consistency == "Bounded" else f"milvus-{consistency.lower()}"  # its workdir
        self.label = f"Milvus HNSW M{HNSW_M} ({consistency})"
        self.server: Any = None
        self.build_s = 0.0

    def before_start(self, collections_dir: Path, vectors: np.ndarray) -> dict[str, str]:
        """Start Milvus, build the collection in it; the server's environment that serves it from there."""
        from arcsearch.index.collections import create_collection, read_collection
        from arcsearch.index.items import ItemRecord
        from arcsearch.index.milvus_store import MilvusStore, connect

        if milvus_index(self.factory).index_type != "HNSW":
            raise PeerUnavailableError(f"arcsearch's Milvus collections are FLAT or HNSW, not {self.factory}")
        self.server = milvus_standalone(self.work_dir, bin_cache=self.bin_cache)
        started = time.perf_counter()
        create_collection(collections_dir, COLLECTION, self.embedder_dir, backend="milvus")
        info = read_collection(collections_dir, COLLECTION)
        client = connect(self.server.uri, timeout_s=600)
        try:
            store = MilvusStore.create(client, COLLECTION, vectors, [ItemRecord(str(i), label="doc")
                                                                     for i in range(len(vectors))],
                                       modality=info.modality, embedder_sha256=info.embedder_sha256,
                                       index_type="HNSW", build_params={"M": HNSW_M, "efConstruction": EF_CONSTRUCTION})
            wait_indexed(client, store.version, len(vectors))
            client.release_collection(store.version)
            client.load_collection(store.version)  # reloaded with every segment's index
        finally:
            client.close()
        self.build_s = time.perf_counter() - started
        return {"ARCSEARCH_INDEX_BACKEND": "milvus", "ARCSEARCH_MILVUS_URI": self.server.uri,
                "ARCSEARCH_MILVUS_CONSISTENCY": self.consistency}

    def after_start(self, base: str, vectors: np.ndarray) -> None:
        """Nothing: the collection was built in Milvus before the server started."""

    def param_env(self, value: int | None) -> dict[str, str]:
        return {"ARCSEARCH_MILVUS_EF": str(value)} if value is not None else {}

    def info(self) -> dict[str, Any]:
        return {"index": {"type": "HNSW", "M": HNSW_M, "efConstruction": EF_CONSTRUCTION, "metric": "IP"},
                "consistency": self.consistency, "milvus_build_s": self.build_s,
                "build_includes": "collection folder, MilvusStore.create (insert, flush, index, load), server start",
                "rss_includes": "the arcsearch server only (Milvus runs in its own process)"}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
