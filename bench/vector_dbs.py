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

This module is the entry point: arguments, the markdown table, machine info and the results JSON. The vectors
and the exact truth are in ``bench.vector_sets``, the engine adapters in ``bench.vector_engines``, the timing
and scoring in ``bench.vector_measure``.

Usage:
    .venv/bin/python -m bench.vector_dbs --extra-random 100000 --queries 300 --out artifacts/bench/vector_dbs.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.vector_engines import DB_ENGINES, engine_factories
from bench.vector_measure import run_vector_set
from bench.vector_sets import VectorSet, add_source_args, real_set_from_args, with_random

logger = logging.getLogger(__name__)

PACKAGES = ("faiss-cpu", "chromadb", "qdrant-client", "pymilvus", "milvus-lite", "numpy", "torch")


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


def machine_info(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """Platform, CPU count and the versions of ``packages`` (None where not installed)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "versions": versions}


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(parser, model_help="local sentence-transformers folder for the glosses and queries")
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
    parser.add_argument("--workdir", type=Path, default=None, help="where engines persist (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    return parser.parse_args(argv)


def vector_sets(args: argparse.Namespace) -> list[VectorSet]:
    """The real set (read or embedded) and, with --extra-random, the real set plus random vectors."""
    real = real_set_from_args(args, embedder_dir=args.embedder)
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
