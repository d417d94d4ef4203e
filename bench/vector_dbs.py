"""arcsearch's FAISS search against the local vector databases a user would otherwise run, on the same vectors.

Engines: arcsearch's own index code path (``index.store.IndexStore``: build from vectors + item records, save
the bundle, load it as the service does, search with label filters through an IDSelector) with the Flat and
HNSW32 factories; Chroma (``chromadb.PersistentClient``, HNSW), Qdrant in local mode
(``QdrantClient(":memory:")``; ``--engines ...,qdrant-path`` for ``QdrantClient(path=...)``) and Milvus Lite
(``pymilvus.MilvusClient`` on a local ``.db`` file). The three databases come with ``pip install -e .[bench]``;
one that cannot be imported or started is reported as unavailable with the reason, never measured.

Vectors: the 5,784 WordNet glosses embedded with the pretrained all-MiniLM-L6-v2 (384-d, L2-normalised; or an
exported text embedder bundle with ``--embedder``), labelled by hypernym; queries are the hypernym names
("abstraction", "summer squash", ...): real texts that are not in the collection. A second, larger set adds
``--extra-random`` synthetic unit vectors drawn from a Gaussian fitted to the real vectors (mean and
covariance; ``--random-kind uniform`` for isotropic ones), each given a label of the real set at random.

Per engine and set: build time (insert N vectors with ids and a label payload, then one query, so lazily built
indexes count), single-query latency p50/p99 (k=10, inner product = cosine), batch QPS (``--batch-size``
queries per call), recall@10 against exact numpy brute force, and latency and recall of a search filtered to
the query's own label. Query loops are interleaved (each round runs every engine once, in a rotating order) so
load from other processes hits all engines alike; ratios are engine / the first arcsearch factory.

Usage:
    .venv/bin/python -m bench.vector_dbs --extra-random 100000 --queries 300 --out artifacts/bench/vector_dbs.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from index.corpus import read_text_file
from index.items import ItemRecord
from index.store import IndexStore

logger = logging.getLogger(__name__)

DB_ENGINES = ("chroma", "qdrant", "milvus")
PACKAGES = ("faiss-cpu", "chromadb", "qdrant-client", "pymilvus", "milvus-lite", "numpy", "torch")


# ---------------------------------------------------------------------------------------------- data


@dataclass
class VectorSet:
    """Documents (n, d) with one label each, and queries (q, d) with the label each one is about; rows unit L2."""

    name: str
    doc_vectors: np.ndarray
    doc_labels: list[str]
    query_vectors: np.ndarray
    query_labels: list[str]
    notes: str = ""

    @property
    def size(self) -> int:
        return int(self.doc_vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.doc_vectors.shape[1])


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 copy of (n, d) ``vectors`` with unit L2 rows."""
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


def query_text(label: str) -> str:
    """The hypernym name of a gloss label such as ``summer_squash.n07717070`` -> ``summer squash``."""
    return label.split(".", 1)[0].replace("_", " ")


def embed_texts(texts: list[str], *, model_dir: Path, embedder_dir: Path | None) -> np.ndarray:
    """(len(texts), d) float32 unit vectors from an exported embedder bundle, else a local sentence-transformers
    folder; nothing is fetched from a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if embedder_dir is not None:
        from index.embedder import load_embedder

        return unit_rows(load_embedder(embedder_dir, device="cpu").embed_texts(texts))
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    return unit_rows(model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                                  show_progress_bar=False))


def real_vector_set(data_dir: Path, *, model_dir: Path, embedder_dir: Path | None, queries: int,
                    seed: int) -> VectorSet:
    """The glosses as documents and ``queries`` hypernym names (chosen at random, seeded) as queries."""
    items = read_text_file(data_dir / "wordnet_glosses.jsonl")
    labels = sorted({item.label for item in items})
    chosen = [labels[i] for i in np.random.default_rng(seed).permutation(len(labels))[:queries]]
    started = time.perf_counter()
    vectors = embed_texts([item.text for item in items] + [query_text(label) for label in chosen],
                          model_dir=model_dir, embedder_dir=embedder_dir)
    logger.info("embedded %d glosses and %d queries in %.1f s", len(items), len(chosen),
                time.perf_counter() - started)
    source = str(embedder_dir) if embedder_dir is not None else str(model_dir)
    return VectorSet(name="glosses", doc_vectors=vectors[:len(items)], doc_labels=[i.label for i in items],
                     query_vectors=vectors[len(items):], query_labels=chosen,
                     notes=f"WordNet glosses embedded by {source}; queries: hypernym names")


def save_vector_set(path: Path, vectors: VectorSet) -> None:
    """Write a VectorSet to an ``.npz`` file that ``load_vector_set`` reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, doc_vectors=vectors.doc_vectors, doc_labels=np.asarray(vectors.doc_labels),
             query_vectors=vectors.query_vectors, query_labels=np.asarray(vectors.query_labels),
             notes=np.asarray(vectors.notes))


def load_vector_set(path: Path, *, queries: int) -> VectorSet:
    """A VectorSet from an ``.npz`` (doc_vectors, doc_labels, query_vectors, query_labels), first ``queries``."""
    with np.load(path, allow_pickle=False) as data:
        notes = str(data["notes"]) if "notes" in data else f"vectors from {path}"
        return VectorSet(name="glosses", doc_vectors=unit_rows(data["doc_vectors"]),
                         doc_labels=[str(x) for x in data["doc_labels"]],
                         query_vectors=unit_rows(data["query_vectors"][:queries]),
                         query_labels=[str(x) for x in data["query_labels"][:queries]], notes=notes)


def random_unit_vectors(count: int, like: np.ndarray, rng: np.random.Generator, *, kind: str = "fitted",
                        chunk: int = 20000) -> np.ndarray:
    """(count, d) float32 unit vectors: from a Gaussian with the mean and covariance of ``like`` (n, d)
    ("fitted"), or isotropic ("uniform" on the sphere)."""
    dim = like.shape[1]
    if kind == "uniform":
        return unit_rows(rng.standard_normal((count, dim), dtype=np.float32))
    if kind != "fitted":
        raise ValueError(f"random kind must be 'fitted' or 'uniform', got {kind!r}")
    mean = like.mean(axis=0, dtype=np.float64)
    factor = np.linalg.cholesky(np.cov(like, rowvar=False) + 1e-6 * np.eye(dim))
    parts = [unit_rows(mean + rng.standard_normal((min(chunk, count - start), dim)) @ factor.T)
             for start in range(0, count, chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


def with_random(base: VectorSet, extra: int, *, kind: str, seed: int) -> VectorSet:
    """``base`` plus ``extra`` random unit vectors (labels drawn from ``base``'s labels); same queries."""
    rng = np.random.default_rng(seed)
    distinct = sorted(set(base.doc_labels))
    labels = [distinct[i] for i in rng.integers(0, len(distinct), size=extra)]
    vectors = np.concatenate([base.doc_vectors, random_unit_vectors(extra, base.doc_vectors, rng, kind=kind)])
    return VectorSet(name=f"{base.name}+{extra}-{kind}-random", doc_vectors=vectors,
                     doc_labels=base.doc_labels + labels, query_vectors=base.query_vectors,
                     query_labels=base.query_labels,
                     notes=f"{base.notes}; plus {extra} {kind} random unit vectors with random real labels")


# ---------------------------------------------------------------------------------------------- truth


def exact_top_k(docs: np.ndarray, queries: np.ndarray, k: int, *, chunk: int = 256) -> np.ndarray:
    """(q, k) int64 ids of the ``k`` largest inner products of each of the (q, d) queries with (n, d) docs,
    best first (numpy brute force; -1 pads when n < k)."""
    want = min(k, len(docs))
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ docs.T
        top = np.argpartition(-scores, want - 1, axis=1)[:, :want]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start:start + chunk, :want] = np.take_along_axis(top, order, axis=1)
    return out


def exact_filtered_top_k(docs: np.ndarray, doc_labels: Sequence[str], queries: np.ndarray,
                         query_labels: Sequence[str], k: int) -> list[np.ndarray]:
    """For each query, ids of the ``k`` best docs among those with the query's label (fewer if fewer match)."""
    labels = np.asarray(doc_labels)
    truth = []
    for query, label in zip(queries, query_labels, strict=True):
        allowed = np.flatnonzero(labels == label)
        scores = docs[allowed] @ query
        truth.append(allowed[np.argsort(-scores, kind="stable")[:k]].astype(np.int64))
    return truth


def recall_at_k(found: Sequence[Sequence[int]], truth: Sequence[Sequence[int]], k: int) -> float:
    """Mean over queries of |found[:k] ∩ truth[:k]| / |truth[:k]| (ids < 0 in truth are padding)."""
    if len(found) != len(truth):
        raise ValueError(f"{len(found)} result lists but {len(truth)} truth lists")
    shares = []
    for got, want in zip(found, truth, strict=True):
        wanted = {int(i) for i in list(want)[:k] if int(i) >= 0}
        if wanted:
            shares.append(len(wanted & {int(i) for i in list(got)[:k]}) / len(wanted))
    return float(np.mean(shares)) if shares else float("nan")


# ---------------------------------------------------------------------------------------------- engines


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
        return {"code_path": "index.store.IndexStore (build, save, load, search)", "factory": self.factory,
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


# ---------------------------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    """What one engine did on one vector set; durations in seconds."""

    key: str
    name: str = ""
    status: str = "ok"  # ok | unavailable | failed | skipped
    reason: str = ""
    build_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    single_s: list[float] = field(default_factory=list)
    single_ids: list[list[int]] = field(default_factory=list)
    batch_s: list[float] = field(default_factory=list)
    filtered_s: list[float] = field(default_factory=list)
    filtered_ids: list[list[int]] = field(default_factory=list)


def percentile_ms(samples_s: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) of durations in seconds, in milliseconds; None without samples."""
    return float(np.percentile(np.asarray(samples_s) * 1000.0, q)) if len(samples_s) else None


def start_engine(key: str, make: EngineFactory, workdir: Path, vectors: VectorSet) -> tuple[Engine | None, Measured]:
    """Construct and fill one engine, timing the insert + first query; failures are recorded, not raised."""
    measured = Measured(key=key, name=key)
    try:
        engine = make(workdir)
    except ImportError as exc:
        measured.status, measured.reason = "unavailable", f"cannot import: {exc}"
        return None, measured
    except Exception as exc:  # noqa: BLE001 - an engine that cannot start is reported, the others still run
        measured.status, measured.reason = "unavailable", f"cannot start: {type(exc).__name__}: {exc}"
        return None, measured
    measured.name = engine.name
    try:
        started = time.perf_counter()
        engine.build(vectors.doc_vectors, vectors.doc_labels)
        engine.search(vectors.query_vectors[0], 1)
        measured.build_s = time.perf_counter() - started
        measured.info = engine.info()
    except Exception as exc:  # noqa: BLE001
        logger.exception("%s failed to build %d vectors", measured.name, vectors.size)
        measured.status, measured.reason = "failed", f"build: {type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            engine.close()
        return None, measured
    logger.info("%s: inserted %d vectors in %.2f s", measured.name, vectors.size, measured.build_s)
    return engine, measured


def interleaved(engines: dict[str, Engine], rounds: int, call: Callable[[Engine, int], list[Any]],
                record: Callable[[str, float, list[Any]], None], *, deadline: float, budget_s: float,
                warmup: int = 3) -> dict[str, int]:
    """Run ``call(engine, i)`` for i in range(rounds), every engine once per round in a rotating order,
    passing each duration (s) and result to ``record``. An engine leaves once it has spent ``budget_s`` in
    this phase; all stop at ``deadline`` (time.monotonic). Returns the rounds each engine did."""
    for i in range(min(warmup, rounds)):
        for engine in engines.values():
            call(engine, i)
    keys = list(engines)
    spent = dict.fromkeys(keys, 0.0)
    done = dict.fromkeys(keys, 0)
    for i in range(rounds):
        active = [key for key in keys if spent[key] < budget_s]
        if not active or time.monotonic() > deadline:
            logger.warning("stopped after %d of %d rounds (time limit)", i, rounds)
            break
        shift = i % len(active)
        for key in active[shift:] + active[:shift]:
            started = time.perf_counter()
            result = call(engines[key], i)
            seconds = time.perf_counter() - started
            record(key, seconds, result)
            spent[key] += seconds
            done[key] += 1
    for key in keys:
        if done[key] < rounds:
            logger.warning("%s: %d of %d rounds within the limits", key, done[key], rounds)
    return done


def measure_queries(engines: dict[str, Engine], measured: dict[str, Measured], vectors: VectorSet, *, k: int,
                    batch_size: int, batch_rounds: int, deadline: float, budget_s: float) -> dict[str, dict[str, int]]:
    """Single, batch and filtered searches, interleaved across engines; returns rounds done per phase and engine."""
    queries, labels = vectors.query_vectors, vectors.query_labels
    n = len(queries)

    def keep_single(key: str, seconds: float, ids: list[int]) -> None:
        measured[key].single_s.append(seconds)
        measured[key].single_ids.append(ids)

    def keep_filtered(key: str, seconds: float, ids: list[int]) -> None:
        measured[key].filtered_s.append(seconds)
        measured[key].filtered_ids.append(ids)

    def batch_of(i: int) -> np.ndarray:
        start = (i * batch_size) % n
        return np.take(queries, np.arange(start, start + batch_size) % n, axis=0)

    limits = {"deadline": deadline, "budget_s": budget_s}
    return {
        "single": interleaved(engines, n, lambda e, i: e.search(queries[i], k), keep_single, **limits),
        "batch": interleaved(engines, batch_rounds, lambda e, i: e.search_batch(batch_of(i), k),
                             lambda key, s, _: measured[key].batch_s.append(s), **limits),
        "filtered": interleaved(engines, n, lambda e, i: e.search_filtered(queries[i], k, labels[i]),
                                keep_filtered, **limits),
    }


def summarise(measured: Measured, truth: np.ndarray, filtered_truth: list[np.ndarray], *, k: int,
              batch_size: int) -> dict[str, Any]:
    """The JSON row of one engine: medians, percentiles (ms), QPS, recalls."""
    row: dict[str, Any] = {"key": measured.key, "engine": measured.name, "status": measured.status,
                           "reason": measured.reason, "info": measured.info}
    if measured.status != "ok":
        return row
    batch_median = float(np.median(measured.batch_s)) if measured.batch_s else None
    row |= {
        "build_s": measured.build_s,
        "single_queries": len(measured.single_s),
        "p50_ms": percentile_ms(measured.single_s, 50), "p99_ms": percentile_ms(measured.single_s, 99),
        "batch_calls": len(measured.batch_s), "batch_size": batch_size,
        "batch_qps": batch_size / batch_median if batch_median else None,
        "recall_at_k": recall_at_k(measured.single_ids, truth[:len(measured.single_ids)], k),
        "filtered_queries": len(measured.filtered_s),
        "filtered_p50_ms": percentile_ms(measured.filtered_s, 50),
        "filtered_p99_ms": percentile_ms(measured.filtered_s, 99),
        "filtered_recall_at_k": recall_at_k(measured.filtered_ids, filtered_truth[:len(measured.filtered_ids)], k),
    }
    return row


RATIO_FIELDS = ("build_s", "p50_ms", "p99_ms", "batch_qps", "filtered_p50_ms")


def add_ratios(rows: list[dict[str, Any]], reference_key: str) -> None:
    """Give each measured row ``ratios``: its value / the reference row's, for RATIO_FIELDS (QPS: higher is better
    for the engine, so a ratio below 1 means fewer queries per second than arcsearch)."""
    reference = next((r for r in rows if r["key"] == reference_key and r["status"] == "ok"), None)
    for row in rows:
        if row["status"] != "ok" or reference is None:
            continue
        row["ratios"] = {name: (row[name] / reference[name] if row.get(name) and reference.get(name) else None)
                         for name in RATIO_FIELDS}
        row["ratios_against"] = reference["engine"]


def run_vector_set(vectors: VectorSet, makers: dict[str, EngineFactory], *, k: int, batch_size: int,
                   batch_rounds: int, deadline: float, budget_s: float, workdir: Path) -> dict[str, Any]:
    """Build every engine on ``vectors``, measure them interleaved, close them; the set's JSON entry."""
    logger.info("set %s: %d vectors of dimension %d, %d queries", vectors.name, vectors.size, vectors.dim,
                len(vectors.query_vectors))
    truth = exact_top_k(vectors.doc_vectors, vectors.query_vectors, k)
    filtered_truth = exact_filtered_top_k(vectors.doc_vectors, vectors.doc_labels, vectors.query_vectors,
                                          vectors.query_labels, k)
    engines: dict[str, Engine] = {}
    measured: dict[str, Measured] = {}
    try:
        for key, make in makers.items():
            if time.monotonic() > deadline:
                measured[key] = Measured(key=key, name=key, status="skipped", reason="time limit reached before build")
                continue
            engine, measured[key] = start_engine(key, make, workdir / vectors.name, vectors)
            if engine is not None:
                engines[key] = engine
        done = measure_queries(engines, measured, vectors, k=k, batch_size=batch_size, batch_rounds=batch_rounds,
                               deadline=deadline, budget_s=budget_s) if engines else {}
    finally:
        for engine in engines.values():
            engine.close()
    rows = [summarise(m, truth, filtered_truth, k=k, batch_size=batch_size) for m in measured.values()]
    add_ratios(rows, next(iter(makers)))
    matches = np.asarray([sum(label == q for label in vectors.doc_labels) for q in vectors.query_labels])
    return {"name": vectors.name, "size": vectors.size, "dim": vectors.dim, "queries": len(vectors.query_vectors),
            "notes": vectors.notes, "rounds_done": done, "filter_matches_median": float(np.median(matches)),
            "engines": rows}


# ---------------------------------------------------------------------------------------------- report


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or value != value else f"{value:,.{digits}f}"


def _ratio(row: dict[str, Any], name: str) -> str:
    value = (row.get("ratios") or {}).get(name)
    return "–" if value is None else f"{value:.2f}×"


def _fewer(done: int, total: int) -> str:
    """A note when an engine answered only ``done`` of ``total`` queries within the time limits."""
    return "" if done >= total else f" ({done} q)"


def format_table(sets: list[dict[str, Any]]) -> str:
    """A markdown table: one row per engine and vector set; unavailable engines say why."""
    lines = ["| vectors | engine | build s | p50 / p99 ms | batch QPS | recall@10 | filtered p50 ms (recall) "
             "| ratio p50 / QPS / build / filtered |", "|---|---|---|---|---|---|---|---|"]
    for entry in sets:
        label = f"{entry['size']:,} × {entry['dim']}"
        for row in entry["engines"]:
            if row["status"] != "ok":
                lines.append(f"| {label} | {row['engine']} | {row['status']}: {row['reason']} | | | | | |")
                continue
            single = _fewer(row["single_queries"], entry["queries"])
            filtered = _fewer(row["filtered_queries"], entry["queries"])
            lines.append(
                f"| {label} | {row['engine']} | {_num(row['build_s'], 2)} | {_num(row['p50_ms'], 2)} / "
                f"{_num(row['p99_ms'], 2)}{single} | {_num(row['batch_qps'], 0)} | {_num(row['recall_at_k'], 3)} | "
                f"{_num(row['filtered_p50_ms'], 2)} ({_num(row['filtered_recall_at_k'], 3)}){filtered} | "
                f"{_ratio(row, 'p50_ms')} / {_ratio(row, 'batch_qps')} / {_ratio(row, 'build_s')} / "
                f"{_ratio(row, 'filtered_p50_ms')} |")
    return "\n".join(lines) + "\n"


def machine_info() -> dict[str, Any]:
    """Platform, CPU count and the versions of the packages measured (None where not installed)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "versions": versions}


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=Path("data/pretrained/all-MiniLM-L6-v2"),
                        help="local sentence-transformers folder for the glosses and queries")
    parser.add_argument("--embedder", type=Path, default=None, help="an exported text embedder bundle instead")
    parser.add_argument("--vectors", type=Path, default=None,
                        help="read vectors from this .npz (doc_vectors, doc_labels, query_vectors, query_labels)")
    parser.add_argument("--save-vectors", type=Path, default=None, help="write the embedded vectors to this .npz")
    parser.add_argument("--queries", type=int, default=300, help="real queries (at most 600 hypernym names)")
    parser.add_argument("--extra-random", type=int, default=100000,
                        help="also run on the real vectors plus this many random ones (0: real only)")
    parser.add_argument("--random-kind", choices=("fitted", "uniform"), default="fitted")
    parser.add_argument("--no-real-only", action="store_true", help="skip the set of real vectors alone")
    parser.add_argument("--factories", default="Flat,HNSW32", help="arcsearch FAISS factories (first = reference)")
    parser.add_argument("--engines", default=",".join(DB_ENGINES), help="databases to compare ('' for none)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-rounds", type=int, default=30)
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="time limit: later rounds and builds are skipped once it has passed")
    parser.add_argument("--engine-phase-seconds", type=float, default=60.0,
                        help="an engine stops taking rounds of a phase (single, batch, filtered) after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where engines persist (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    return parser.parse_args(argv)


def vector_sets(args: argparse.Namespace) -> list[VectorSet]:
    """The real set (read or embedded) and, with --extra-random, the real set plus random vectors."""
    if args.vectors is not None:
        real = load_vector_set(args.vectors, queries=args.queries)
    else:
        real = real_vector_set(args.data_dir, model_dir=args.model, embedder_dir=args.embedder,
                               queries=args.queries, seed=args.seed)
    if args.save_vectors is not None:
        save_vector_set(args.save_vectors, real)
    sets = [] if args.no_real_only else [real]
    if args.extra_random > 0:
        sets.append(with_random(real, args.extra_random, kind=args.random_kind, seed=args.seed))
    return sets


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    deadline = time.monotonic() + args.max_seconds
    makers = engine_factories([f for f in args.factories.split(",") if f],
                              [e for e in args.engines.split(",") if e])
    sets = vector_sets(args)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arcsearch-vdb-"))
    try:
        results = [run_vector_set(v, makers, k=args.k, batch_size=args.batch_size, batch_rounds=args.batch_rounds,
                                  deadline=deadline, budget_s=args.engine_phase_seconds, workdir=workdir)
                   for v in sets]
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report = {"command": " ".join(["python -m bench.vector_dbs", *(argv if argv is not None else sys.argv[1:])]),
              "machine": machine_info(), "k": args.k, "seed": args.seed, "sets": results}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        logger.info("wrote %s", args.out)
    sys.stdout.write(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
