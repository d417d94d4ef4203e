"""The index chooser at scale: 1M vectors on this machine's cores, the chosen index against Flat.

For each ``--sizes`` x ``--dims``: a corpus of n unit vectors and ``--queries`` held-out queries (not in the
corpus) drawn from a Gaussian mixture fitted to real embeddings (``bench.scale_data``); exact truth by brute
force (``faiss.knn``, inner product). Then, each in its own process (so its peak RSS is its own):

- ``Flat``: the exact baseline, batched QPS (median of ``--repeats`` searches of all queries).
- each candidate of the chooser's ladder (``--candidates ladder``), or the chosen one only (``chosen``), or a
  comma list of factories: built as the chooser builds it (trained on a sample, knob tuned on held-out
  *corpus* vectors to ``--target-recall``), saved, loaded back as the service loads it (memory-mapped from
  ``index.mapped.MMAP_MIN_BYTES``), then scored on the held-out queries: recall@10, batched QPS, single-query
  p50, build seconds, peak RSS and index file size, and a sweep of its knob for the recall-vs-QPS PNG.

The row marked ``chosen`` is what ``arcsearch index --target-recall ... --max-memory ...`` picks for that size,
dimension and budget. Ratios are QPS / Flat's QPS in the same run.

Usage:
    .venv/bin/python -m bench.scale_index --sizes 100000 --dims 128 384 --data-dir $ARCSEARCH_TEST_DATA \\
        --model $ARCSEARCH_TEST_DATA/pretrained/all-MiniLM-L6-v2 --out artifacts/bench/scale
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.scale_data import draw, fit_mixture, project
from bench.vector_dbs import machine_info
from bench.vector_sets import load_vector_set, real_vector_set, save_vector_set

logger = logging.getLogger(__name__)

K = 10
SWEEP_STOP_RECALL = 0.995  # the knob sweep for the PNG stops once recall@10 passes this ...
SWEEP_MAX_VALUE = 512  # ... or the knob passes this


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 384])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--max-memory", default="2GiB", help="the chooser's budget for the index")
    parser.add_argument("--candidates", nargs="+", default=["ladder"],
                        help="ladder, chosen, or FAISS factory strings (each one argument)")
    parser.add_argument("--components", type=int, default=256, help="Gaussian components fitted to the real set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=Path("data/pretrained/all-MiniLM-L6-v2"))
    parser.add_argument("--vectors", type=Path, default=Path("artifacts/bench/glosses.npz"),
                        help="the embedded glosses (.npz), written on first use")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/scale"))
    return parser.parse_args(argv)


def real_vectors(args: argparse.Namespace) -> np.ndarray:
    """The unit 384-d gloss embeddings the mixture is fitted to (embedded once, then read from --vectors)."""
    if not args.vectors.is_file():
        save_vector_set(args.vectors, real_vector_set(args.data_dir, model_dir=args.model, embedder_dir=None,
                                                      queries=1, seed=args.seed))
    return load_vector_set(args.vectors, queries=1).doc_vectors


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def batched_qps(index: Any, queries: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """(median batched queries per second over ``repeats`` searches, (q, K) ids of the last)."""
    rates, ids = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        _, ids = index.search(queries, K)
        rates.append(len(queries) / (time.perf_counter() - start))
    return float(np.median(rates)), ids


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    from arcsearch.index.tuning import recall_at_k

    return recall_at_k(found, truth)


def run_flat(paths: dict[str, str], repeats: int) -> dict[str, Any]:
    """The exact baseline, in a child process."""
    import faiss

    corpus, queries, truth = (np.load(paths[key]) for key in ("corpus", "queries", "truth"))
    start = time.perf_counter()
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus)
    build_s = time.perf_counter() - start
    qps, ids = batched_qps(index, queries, repeats)
    return {"factory": "Flat", "params": "", "recall": recall(ids, truth), "qps": qps, "build_s": build_s,
            "peak_rss_mib": peak_rss_mib(), "index_mib": corpus.nbytes / 2 ** 20, "mapped": False, "curve": []}


def run_candidate(paths: dict[str, str], factory: str, target: float, repeats: int, seed: int) -> dict[str, Any]:
    """Build ``factory`` as the chooser does, reload it as the service does, score it; in a child process."""
    import faiss

    from arcsearch.index.chooser import build_tuned
    from arcsearch.index.faiss_index import set_search_params
    from arcsearch.index.mapped import read_index_file
    from arcsearch.index.tuning import knob_values, query_ms_p50

    corpus, queries, truth = (np.load(paths[key]) for key in ("corpus", "queries", "truth"))
    built, tuned, build_s = build_tuned(corpus, factory, target_recall=target, seed=seed)
    file = Path(paths["workdir"]) / f"{factory.replace(',', '_')}.faiss"
    faiss.write_index(built, str(file))
    del built
    index, mapped = read_index_file(file)
    knob, values = knob_values(index)
    curve: list[dict[str, Any]] = []
    for value in values:
        if curve and (curve[-1]["recall"] >= SWEEP_STOP_RECALL or value > SWEEP_MAX_VALUE):
            break  # past this the curve is flat in recall and only slower
        set_search_params(index, f"{knob}={value}")
        qps, ids = batched_qps(index, queries, 1)
        curve.append({"params": f"{knob}={value}", "recall": recall(ids, truth), "qps": qps})
    set_search_params(index, tuned.params)
    qps, ids = batched_qps(index, queries, repeats)
    result = {"factory": factory, "params": tuned.params, "tuned_recall": tuned.recall, "recall": recall(ids, truth),
              "qps": qps, "p50_ms": query_ms_p50(index, queries), "build_s": build_s, "peak_rss_mib": peak_rss_mib(),
              "index_mib": file.stat().st_size / 2 ** 20, "mapped": mapped, "curve": curve}
    file.unlink()
    return result


def in_child(function: Any, *args: Any) -> dict[str, Any]:
    """``function(*args)`` in a fresh (spawned) process: its own peak RSS, no OpenMP state shared by fork."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def candidates(spec: list[str], n: int, dim: int, chosen: str) -> list[str]:
    from arcsearch.index.chooser import candidate_factories

    if spec == ["chosen"]:
        return [chosen]
    if spec == ["ladder"]:
        ladder = candidate_factories(n, dim)
        pq = [f for f in ladder if "PQ" in f]
        return [f for f in ladder if "PQ" not in f] + pq[1:2]  # one PQ size (d/4 bytes) stands for the family
    return spec


def run_set(args: argparse.Namespace, real: np.ndarray, n: int, dim: int) -> dict[str, Any]:
    import faiss

    from arcsearch.index.chooser import IndexBudget, choose_factory, parse_memory

    mixture = fit_mixture(project(real, dim), components=args.components, seed=args.seed)
    vectors = draw(mixture, n + args.queries, seed=args.seed)
    corpus, queries = vectors[:n], vectors[n:]
    _, truth = faiss.knn(queries, corpus, K, metric=faiss.METRIC_INNER_PRODUCT)
    workdir = args.out / f"work-{n}x{dim}"
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {"workdir": str(workdir)}
    for key, array in (("corpus", corpus), ("queries", queries), ("truth", truth)):
        paths[key] = str(workdir / f"{key}.npy")
        np.save(paths[key], array)
    del vectors, corpus
    budget = IndexBudget(target_recall=args.target_recall, max_memory_bytes=parse_memory(args.max_memory))
    chosen = choose_factory(n, dim, budget)
    rows = [in_child(run_flat, paths, args.repeats)]
    for factory in candidates(args.candidates, n, dim, chosen):
        logger.info("%d x %d: building %s", n, dim, factory)
        rows.append(in_child(run_candidate, paths, factory, args.target_recall, args.repeats, args.seed) |
                    {"chosen": factory == chosen})
        logger.info("%d x %d: %s", n, dim, json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}))
    for key in ("corpus", "queries", "truth"):
        Path(paths[key]).unlink()
    workdir.rmdir()
    return {"n": n, "dim": dim, "chosen": chosen, "max_memory": args.max_memory, "rows": rows}


def format_table(sets: list[dict[str, Any]]) -> str:
    lines = ["| n | d | index | params | recall@10 | QPS | x Flat | p50 ms | build s | peak RSS MiB | index MiB | "
             "mapped |", "|" + "---|" * 12]
    for result in sets:
        flat_qps = result["rows"][0]["qps"]
        for row in result["rows"]:
            name = f"**{row['factory']}** (chosen)" if row.get("chosen") else row["factory"]
            lines.append(f"| {result['n']:,} | {result['dim']} | {name} | {row['params'] or '-'} | {row['recall']:.3f} "
                         f"| {row['qps']:,.0f} | {row['qps'] / flat_qps:.1f} | {row.get('p50_ms', float('nan')):.2f} "
                         f"| {row['build_s']:.1f} | {row['peak_rss_mib']:,.0f} | {row['index_mib']:,.0f} "
                         f"| {'yes' if row['mapped'] else 'no'} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in result["rows"]:
        points = row["curve"] or [{"recall": row["recall"], "qps": row["qps"]}]
        ax.plot([p["recall"] for p in points], [p["qps"] for p in points], marker="o", markersize=3,
                label=row["factory"] + (" (chosen)" if row.get("chosen") else ""))
    ax.axvline(0.95, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="recall@10", ylabel="queries per second (batched)", yscale="log",
           title=f"{result['n']:,} x {result['dim']} vectors, Gaussian mixture fitted to real embeddings")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    real = real_vectors(args)
    sets = []
    for n in args.sizes:
        for dim in args.dims:
            sets.append(run_set(args, real, n, dim))
            plot(sets[-1], args.out / f"recall_qps_{n}x{dim}.png")
    report = {"command": " ".join(["python -m bench.scale_index", *(argv if argv is not None else sys.argv[1:])]),
              "machine": machine_info(), "sets": sets}
    (args.out / "scale_index.json").write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(format_table(sets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
