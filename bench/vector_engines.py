"""The vector stores the benchmark compares, behind one ``Engine`` protocol; ids are document row numbers.

``FaissEngine`` is arcsearch's own index path (``index.store.IndexStore``: build, save, load, search with label
filters); ``ChromaEngine``, ``QdrantEngine`` (local mode, in memory or on a path) and ``MilvusEngine`` (Milvus
Lite) wrap the databases from the ``bench`` extra, imported only when an engine is constructed.
``engine_factories`` maps engine keys (``faiss:<factory>``, ``chroma``, ``qdrant``, ``qdrant-path``,
``milvus``) to constructors taking a working folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from arcsearch.index.items import ItemRecord
from arcsearch.index.store import IndexStore

logger = logging.getLogger(__name__)

DB_ENGINES = ("chroma", "qdrant", "milvus")


class Engine(Protocol):
    """A vector store under test; ids are the document row numbers 0..n-1."""

    name: str

    def build(self, vectors: np.ndarray, labels: Sequence[str]) -> None: ...

    def search(self, query: np.ndarray, k: int) -> list[int]: ...

    def search_batch(self, queries: np.ndarray, k: int) -> list[list[int]]: ...

    def search_filtered(self, query: np.ndarray, k: int, label: str) -> list[int]: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class FaissEngine:
    """arcsearch's own path: IndexStore.build (make_index with the factory, add with ids) + save, then
    IndexStore.load as the service does; every search goes through IndexStore.search (normalise, read lock,
    item lookup; a label filter selects ids from items.sqlite and passes them to FAISS as an IDSelector)."""

    def __init__(self, workdir: Path, factory: str) -> None:
        self.factory = factory
        self.name = f"arcsearch FAISS {factory}"
        self.folder = workdir / f"faiss-{factory.replace(',', '_')}"
        self.store: IndexStore | None = None

    def build(self, vectors: np.ndarray, labels: Sequence[str]) -> None:
        records = [ItemRecord(external_id=str(i), label=label) for i, label in enumerate(labels)]
        built = IndexStore.build(vectors, records, modality="text", embedder_sha256="bench", factory=self.factory)
        built.save(self.folder)
        self.store = IndexStore.load(self.folder)

    def _ids(self, hits: list[Any]) -> list[int]:
        return [int(hit.external_id) for hit in hits]

    def search(self, query: np.ndarray, k: int) -> list[int]:
        return self._ids(self.store.search(query[None, :], k)[0])

    def search_batch(self, queries: np.ndarray, k: int) -> list[list[int]]:
        return [self._ids(row) for row in self.store.search(queries, k)]

    def search_filtered(self, query: np.ndarray, k: int, label: str) -> list[int]:
        return self._ids(self.store.search(query[None, :], k, label=label)[0])

    def info(self) -> dict[str, Any]:
        return {"code_path": "arcsearch.index.store.IndexStore (build, save, load, search)", "factory": self.factory,
                "search_params": "service default (none)", "persistent": str(self.folder)}

    def close(self) -> None:
        if self.store is not None:
            with contextlib.suppress(AttributeError):
                self.store.items.close()


class ChromaEngine:
    """Chroma's embedded persistent client, inner-product HNSW, embeddings given directly, telemetry off."""

    name = "Chroma"

    def __init__(self, workdir: Path) -> None:
        import chromadb
        from chromadb.config import Settings

        self.client = chromadb.PersistentClient(path=str(workdir / "chroma"),
                                                settings=Settings(anonymized_telemetry=False))
        self.collection = self.client.create_collection("bench", embedding_function=None,
                                                        metadata={"hnsw:space": "ip"})

    def build(self, vectors: np.ndarray, labels: Sequence[str]) -> None:
        step = int(self.client.get_max_batch_size())
        for start in range(0, len(vectors), step):
            stop = min(start + step, len(vectors))
            self.collection.add(ids=[str(i) for i in range(start, stop)], embeddings=vectors[start:stop],
                                metadatas=[{"label": label} for label in labels[start:stop]])

    def _query(self, queries: np.ndarray, k: int, where: dict[str, Any] | None = None) -> list[list[int]]:
        result = self.collection.query(query_embeddings=queries, n_results=k, where=where,
                                       include=["distances", "metadatas"])
        return [[int(i) for i in row] for row in result["ids"]]

    def search(self, query: np.ndarray, k: int) -> list[int]:
        return self._query(query[None, :], k)[0]

    def search_batch(self, queries: np.ndarray, k: int) -> list[list[int]]:
        return self._query(queries, k)

    def search_filtered(self, query: np.ndarray, k: int, label: str) -> list[int]:
        return self._query(query[None, :], k, where={"label": label})[0]

    def info(self) -> dict[str, Any]:
        config = getattr(self.collection, "configuration", None)
        return {"client": "chromadb.PersistentClient", "configuration": json.loads(json.dumps(config, default=str))}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.delete_collection("bench")


class QdrantEngine:
    """Qdrant's local mode (no server): cosine distance, label payload; in memory (``QdrantClient(":memory:")``)
    or persisted (``QdrantClient(path=...)``, which commits every point in its own SQLite transaction)."""

    def __init__(self, workdir: Path, *, persist: bool = False) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        self.persist = persist
        self.name = "Qdrant local (path)" if persist else "Qdrant local (:memory:)"
        self.client = QdrantClient(path=str(workdir / "qdrant")) if persist else QdrantClient(":memory:")
        self.dim = 0

    def build(self, vectors: np.ndarray, labels: Sequence[str]) -> None:
        self.dim = vectors.shape[1]
        self.client.create_collection("bench", vectors_config=self.models.VectorParams(
            size=self.dim, distance=self.models.Distance.COSINE))
        self.client.upload_collection("bench", vectors=vectors, payload=[{"label": label} for label in labels],
                                      ids=list(range(len(vectors))), batch_size=1024)

    def _label_filter(self, label: str) -> Any:
        return self.models.Filter(must=[self.models.FieldCondition(key="label",
                                                                   match=self.models.MatchValue(value=label))])

    def search(self, query: np.ndarray, k: int) -> list[int]:
        return [int(p.id) for p in self.client.query_points("bench", query=query, limit=k, with_payload=True).points]

    def search_batch(self, queries: np.ndarray, k: int) -> list[list[int]]:
        requests = [self.models.QueryRequest(query=q.tolist(), limit=k, with_payload=True) for q in queries]
        return [[int(p.id) for p in r.points] for r in self.client.query_batch_points("bench", requests=requests)]

    def search_filtered(self, query: np.ndarray, k: int, label: str) -> list[int]:
        points = self.client.query_points("bench", query=query, limit=k, with_payload=True,
                                          query_filter=self._label_filter(label)).points
        return [int(p.id) for p in points]

    def info(self) -> dict[str, Any]:
        return {"client": f"qdrant_client.QdrantClient({'path=...' if self.persist else ':memory:'})",
                "distance": "cosine",
                "index": "local mode: exact search in numpy, no HNSW"}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


class MilvusEngine:
    """Milvus Lite: ``pymilvus.MilvusClient`` on a local ``.db`` file, quick-setup collection (IP metric)."""

    name = "Milvus Lite"

    def __init__(self, workdir: Path) -> None:
        from pymilvus import MilvusClient

        self.path = workdir / "milvus.db"
        self.client = MilvusClient(str(self.path))
        self.waited_for_index = False

    def build(self, vectors: np.ndarray, labels: Sequence[str]) -> None:
        """Insert, flush (rows left in the memtable are searched by a slow Python path: ~150 ms a query for
        5k rows), then wait for the background index build, so searches are timed on the finished index."""
        self.client.create_collection("bench", dimension=vectors.shape[1], metric_type="IP", auto_id=False)
        step = 5000
        for start in range(0, len(vectors), step):
            rows = [{"id": i, "vector": vectors[i].tolist(), "label": labels[i]}
                    for i in range(start, min(start + step, len(vectors)))]
            self.client.insert("bench", rows)
        self.client.flush("bench")
        self.waited_for_index = self._wait_for_background_index()

    def _wait_for_background_index(self) -> bool:
        """Block until Milvus Lite's background index build is done (an in-process internal; no public call
        exists). Returns False, and leaves the build running, when that internal is not there."""
        try:
            from milvus_lite.server_manager import server_manager_instance

            db = next(entry[1] for path, entry in server_manager_instance._servers.items()
                      if path == os.path.abspath(self.path))
            db.get_collection("bench")._wait_for_bg()
        except (ImportError, AttributeError, StopIteration, TypeError) as exc:
            logger.warning("cannot wait for Milvus Lite's background index build: %s", exc)
            return False
        return True

    def _search(self, queries: np.ndarray, k: int, expr: str = "") -> list[list[int]]:
        result = self.client.search("bench", data=queries.tolist(), limit=k, filter=expr, output_fields=["label"])
        return [[int(hit["id"]) for hit in row] for row in result]

    def search(self, query: np.ndarray, k: int) -> list[int]:
        return self._search(query[None, :], k)[0]

    def search_batch(self, queries: np.ndarray, k: int) -> list[list[int]]:
        return self._search(queries, k)

    def search_filtered(self, query: np.ndarray, k: int, label: str) -> list[int]:
        return self._search(query[None, :], k, expr=f"label == {json.dumps(label)}")[0]

    def info(self) -> dict[str, Any]:
        index = {}
        with contextlib.suppress(Exception):
            index = self.client.describe_index("bench", self.client.list_indexes("bench")[0])
        return {"client": "pymilvus.MilvusClient(<file>.db)", "index": json.loads(json.dumps(index, default=str)),
                "build_includes": "insert, flush" + (", background index build" if self.waited_for_index else "")}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.drop_collection("bench")
        with contextlib.suppress(Exception):
            self.client.close()


EngineFactory = Callable[[Path], Engine]


def engine_factories(factories: Sequence[str], databases: Sequence[str]) -> dict[str, EngineFactory]:
    """Constructors by engine key: ``faiss:<factory>`` for each factory, then the databases asked for."""
    known: dict[str, EngineFactory] = {"chroma": ChromaEngine, "qdrant": QdrantEngine, "milvus": MilvusEngine,
                                       "qdrant-path": lambda w: QdrantEngine(w, persist=True)}
    unknown = [name for name in databases if name not in known]
    if unknown:
        raise ValueError(f"unknown engines {unknown}; choose from {sorted(known)}")
    made: dict[str, EngineFactory] = {f"faiss:{f}": (lambda w, f=f: FaissEngine(w, f)) for f in factories}
    return made | {name: known[name] for name in databases}
