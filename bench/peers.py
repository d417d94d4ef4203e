"""arcsearch over HTTP against the vector databases' own servers, on the same vectors, at equal recall@10.

Engines, each reached through its network API on 127.0.0.1: arcsearch's vector search
(``POST /v1/collections/{name}/search`` of ``arcsearch serve``, on its FAISS backend and on its Milvus backend:
a Milvus standalone of its own, read with Bounded consistency as the Milvus peer is), Chroma's server
(``chroma run``, ``chromadb.HttpClient``), Milvus standalone through pymilvus (the PyPI ``milvus`` server in a
private network namespace, ``arcsearch.milvus_server``); and plain in-process FAISS on the very index arcsearch
serves, as the limit. An engine that cannot start is a row with the reason, never a number.

Vectors: WordNet glosses embedded by an exported text embedder bundle (``--embedder``; by default exported here
from the local all-MiniLM-L6-v2 folder ``--model``), plus synthetic unit vectors from a Gaussian fitted to them,
up to each of ``--sizes`` in total; queries are hypernym names embedded alike (texts not in the collection).

Per engine: build/insert time (until the first query answers), its search parameter raised along a ladder
until recall@k on the queries reaches ``--recall`` (HNSW efSearch, Milvus ``ef``: ARCSEARCH_MILVUS_EF for
arcsearch on Milvus, Chroma ``ef_search``; FAISS Flat is exact), p50/p99 at 1 client (every query, in
alternation with the in-process FAISS search of the same query), QPS at ``--clients`` closed-loop clients
(bounded by ``--load-requests`` and ``--load-seconds``), and the server's resident memory. Writes ``peers.md``
(the table), ``peers.png`` and ``peers.json`` under ``--out``.

Usage:
    .venv/bin/python -m bench.peers --data-dir data --sizes 100000 --out artifacts/bench/peers
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.peer_databases import ChromaServer, MilvusBackend, MilvusServer, milvus_index
from bench.peer_engines import (
    ArcsearchBackend,
    ArcsearchHttp,
    FaissBackend,
    FaissBundle,
    InProcessFaiss,
    build_faiss_bundle,
)
from bench.peers_measure import LoadPlan, measure_engine, ratios
from bench.peers_report import write_chart, write_report
from bench.vector_dbs import machine_info
from bench.vector_sets import VectorSet, add_source_args, exact_top_k, real_set_from_args, with_random

logger = logging.getLogger(__name__)

PACKAGES = ("faiss-cpu", "chromadb", "milvus", "pymilvus", "fastapi", "uvicorn", "uvloop", "httptools", "httpx",
            "numpy", "torch")

ENGINES = ("arcsearch-faiss", "arcsearch-milvus", "chroma", "milvus")  # in-process FAISS always runs
MORE_ENGINES = ("arcsearch-milvus-strong",)  # only when asked for


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(parser, model_help="local sentence-transformers folder, exported as the text embedder bundle")
    parser.add_argument("--sizes", default="100000", help="comma-separated totals: real vectors + fitted synthetic")
    parser.add_argument("--factory", default="HNSW32",
                        help="arcsearch's FAISS factory; 'auto': the one arcsearch's chooser picks for each size at "
                             "the recall target (IVF past 50k vectors; Milvus then builds the same IVF-Flat)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"subset of {','.join(ENGINES)}; also "
                        "arcsearch-milvus-strong: arcsearch on Milvus read with Strong consistency (the service's "
                        "default) instead of Bounded")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="also measure arcsearch's server with this environment variable (repeatable), e.g. "
                             "OMP_NUM_THREADS=1")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--recall", type=float, default=0.95, help="recall@k each tunable engine is raised to")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--load-requests", type=int, default=3000, help="requests of the N-client phase, at most")
    parser.add_argument("--load-seconds", type=float, default=30.0, help="time cap of the N-client phase")
    parser.add_argument("--milvus-bin-cache", type=Path, default=None,
                        help="where the Milvus binaries are unpacked once (default: ~/.cache/arcsearch/)")
    parser.add_argument("--workdir", type=Path, default=None, help="where engines persist (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/peers"))
    return parser.parse_args(argv)


def text_embedder(args: argparse.Namespace, workdir: Path) -> Path:
    """The exported text embedder bundle the collection pairs with: ``--embedder``, or ``--model`` exported."""
    if args.embedder is not None:
        return args.embedder
    from sentence_transformers import SentenceTransformer

    from arcsearch.training.export import export_text_embedder

    model = SentenceTransformer(str(args.model), device="cpu")
    return export_text_embedder(model, workdir / "text-embedder", backbone=args.model.name)


def vector_sets(args: argparse.Namespace, embedder_dir: Path) -> list[VectorSet]:
    """The real vectors grown with fitted synthetic ones to each total of ``--sizes``."""
    real = real_set_from_args(args, embedder_dir=embedder_dir)
    sizes = [int(size) for size in args.sizes.split(",") if size]
    return [real if size <= real.size else with_random(real, size - real.size, kind="fitted", seed=args.seed)
            for size in sizes]


def milvus_bin_cache(args: argparse.Namespace) -> Path:
    import importlib.metadata

    if args.milvus_bin_cache is not None:
        return args.milvus_bin_cache
    version = importlib.metadata.version("milvus")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "arcsearch" / f"milvus-{version}-bin"


def arcsearch_backends(bundle: FaissBundle, *, embedder_dir: Path, workdir: Path,
                       bin_cache: Path) -> dict[str, ArcsearchBackend | None]:
    """The backends arcsearch's collection can live on, by engine suffix (None: not in the service yet); the
    Milvus one reads with Bounded consistency, as the Milvus peer does; milvus-strong with Strong."""
    return {"faiss": FaissBackend(bundle, embedder_dir=embedder_dir),
            **{name: MilvusBackend(bundle, embedder_dir=embedder_dir, workdir=workdir, bin_cache=bin_cache,
                                   consistency=consistency)
               for name, consistency in (("milvus", "Bounded"), ("milvus-strong", "Strong"))}}


def factory_for(args: argparse.Namespace, vectors: np.ndarray) -> str:
    """``--factory``, or for 'auto' the chooser's pick for these (n, d) vectors at ``--recall``."""
    if args.factory != "auto":
        return args.factory
    from arcsearch.index.chooser import IndexBudget, choose_factory

    return choose_factory(len(vectors), vectors.shape[1], IndexBudget(target_recall=args.recall))


def run_set(vectors: VectorSet, args: argparse.Namespace, *, embedder_dir: Path, workdir: Path) -> dict[str, Any]:
    """Every engine asked for, one after another, on one vector set; the set's JSON entry."""
    engines = {e for e in args.engines.split(",") if e}
    plan = LoadPlan(k=args.k, recall_target=args.recall, clients=args.clients, load_requests=args.load_requests,
                    load_seconds=args.load_seconds)
    docs, queries = vectors.doc_vectors, vectors.query_vectors
    truth = exact_top_k(docs, queries, args.k)
    workdir.mkdir(parents=True, exist_ok=True)
    factory = factory_for(args, docs)
    bundle = build_faiss_bundle(docs, workdir / "faiss-bundle", factory, embedder_dir=embedder_dir)
    row, reference = measure_engine("faiss-in-process", lambda: InProcessFaiss(bundle), docs, queries, truth, plan,
                                    keep=True)
    rows = [row | {"kind": "faiss-in-process"}]
    tuned = row.get("param")
    try:
        env = dict(item.split("=", 1) for item in args.server_env)
        backends = lambda: arcsearch_backends(bundle, embedder_dir=embedder_dir, workdir=workdir,  # noqa: E731
                                              bin_cache=milvus_bin_cache(args))  # fresh per engine
        plans = [("arcsearch-faiss", lambda: ArcsearchHttp(workdir, backends()["faiss"])),
                 ("arcsearch-faiss+env", lambda: ArcsearchHttp(workdir, backends()["faiss"], env=env)),
                 ("arcsearch-milvus", lambda: ArcsearchHttp(workdir, backends()["milvus"], missing="milvus")),
                 ("arcsearch-milvus-strong", lambda: ArcsearchHttp(workdir, backends()["milvus-strong"])),
                 ("chroma", lambda: ChromaServer(workdir)),
                 ("milvus", lambda: MilvusServer(workdir, bin_cache=milvus_bin_cache(args),
                                                 index=milvus_index(factory)))]
        for kind, make in plans:
            if kind in engines or (kind == "arcsearch-faiss+env" and env and "arcsearch-faiss" in engines):
                start = tuned if kind.startswith("arcsearch-faiss") else None  # the same index as in-process
                row, _ = measure_engine(kind, make, docs, queries, truth, plan, reference=reference, start_param=start)
                rows.append(row | {"kind": kind})
    finally:
        if reference is not None:
            reference.close()
    return {"name": vectors.name, "size": vectors.size, "dim": vectors.dim, "queries": len(queries), "factory": factory,
            "notes": vectors.notes, "engines": rows, "ratios": ratios(rows)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arcsearch-peers-"))
    started, load_before = time.monotonic(), os.getloadavg()
    try:
        embedder_dir = text_embedder(args, workdir)
        results = [run_set(v, args, embedder_dir=embedder_dir, workdir=workdir / f"set-{v.size}")
                   for v in vector_sets(args, embedder_dir)]
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    command = " ".join(["python -m bench.peers", *(argv if argv is not None else sys.argv[1:])])
    report = {"command": command, "machine": machine_info(PACKAGES), "k": args.k, "recall_target": args.recall,
              "clients": args.clients, "seconds": time.monotonic() - started, "sets": results,
              "load_average": {"start": load_before, "end": os.getloadavg()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(report, indent=2) + "\n")
    table = write_report(report, args.out / "peers.md")
    write_chart(report, args.out / "peers.png")
    sys.stdout.write(table)
    logger.info("wrote %s/peers.{md,png,json}", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
