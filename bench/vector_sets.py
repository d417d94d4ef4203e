"""The vectors the vector database benchmark runs on, and the exact answers it scores the engines against.

A ``VectorSet`` holds documents (n, d) with one label each and queries (q, d) with the label each one is
about, all rows unit L2 (float32). The real set is the WordNet glosses embedded by a local sentence-transformers
folder or an exported text embedder bundle, labelled by hypernym, with hypernym names as queries; it can be
saved to and read from an ``.npz``. ``with_random`` grows a set with synthetic unit vectors (from a Gaussian
fitted to the real ones, or isotropic). The truth is numpy brute force over inner products: top-k ids, top-k
within the query's label, and recall@k of an engine's ids against them.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arcsearch.index.corpus import read_text_file

logger = logging.getLogger(__name__)


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
        from arcsearch.index.embedder import load_embedder

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


def add_source_args(parser: argparse.ArgumentParser, *, model_help: str) -> None:
    """--data-dir, --model, --embedder, --vectors, --save-vectors and --queries: where the real vectors come from."""
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=Path("data/pretrained/all-MiniLM-L6-v2"), help=model_help)
    parser.add_argument("--embedder", type=Path, default=None, help="an exported text embedder bundle instead")
    parser.add_argument("--vectors", type=Path, default=None,
                        help="read vectors from this .npz (doc_vectors, doc_labels, query_vectors, query_labels)")
    parser.add_argument("--save-vectors", type=Path, default=None, help="write the embedded vectors to this .npz")
    parser.add_argument("--queries", type=int, default=300, help="real queries (at most 600 hypernym names)")
    parser.add_argument("--seed", type=int, default=0)


def real_set_from_args(args: argparse.Namespace, *, embedder_dir: Path | None) -> VectorSet:
    """The real set of ``add_source_args``' arguments: read from --vectors or embedded (then --save-vectors)."""
    if args.vectors is not None:
        real = load_vector_set(args.vectors, queries=args.queries)
    else:
        real = real_vector_set(args.data_dir, model_dir=args.model, embedder_dir=embedder_dir,
                               queries=args.queries, seed=args.seed)
    if args.save_vectors is not None:
        save_vector_set(args.save_vectors, real)
    return real


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
