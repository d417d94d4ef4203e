"""Throughput and latency of the HTTP service at 1 and at 16 concurrent clients (micro-batching at work).

Usage (collections from `make demo` / `arcsearch index ...`):
    .venv/bin/python -m bench.http_concurrency --collections-dir artifacts/collections --requests 400
Without collections, ``--make-collections DIR`` first builds ``images`` (ORL faces) and ``texts``
(WordNet glosses) into DIR with the untrained test embedders (MobileNetV2 + MiniLM; what is measured is
throughput, not quality). The server runs on 127.0.0.1 only; every run is bounded by ``--requests`` and
``--max-seconds``. Prints QPS, p50/p99 ms and the number of forward passes per level of concurrency, and
then the ceiling batching can reach on this machine: the same embedder in-process (same thread policy as
the service), items per second at the server's mean batch size over items per second one at a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

from arcsearch.index.corpus import read_image_folder, read_text_file
from arcsearch.index.embedder import ThreadPolicy, load_embedder
from arcsearch.index.preprocess import decode_image
from bench.http_latency import percentile_ms
from bench.load import Call, run_load
from bench.server_process import running_server


def make_collections(out: Path, data_dir: Path) -> None:
    """Index data/faces and data/wordnet_glosses.jsonl with the test embedders (bench-only set-up)."""
    from arcsearch.index.collections import index_collection
    from tests import bundles

    bundle_dir = out.parent / f"{out.name}-embedders"
    index_collection(out, "images", bundles.image_embedder(bundle_dir), data_dir / "faces", device="cpu")
    index_collection(out, "texts", bundles.text_embedder(bundle_dir), data_dir / "wordnet_glosses.jsonl",
                     device="cpu")


def add_collection_args(parser: argparse.ArgumentParser) -> None:
    """--collections-dir, --make-collections and --data-dir, as every HTTP bench takes them."""
    parser.add_argument("--collections-dir", type=Path, default=Path("artifacts/collections"))
    parser.add_argument("--make-collections", type=Path, default=None, help="build a bench set here first")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))


def bench_collections(args: argparse.Namespace) -> Path:
    """The collections folder to serve: ``--make-collections`` (built first if empty) or ``--collections-dir``."""
    if args.make_collections is None:
        return args.collections_dir
    if not (args.make_collections / "texts").is_dir():
        make_collections(args.make_collections, args.data_dir)
    return args.make_collections


def forward_passes(base: str, name: str) -> int:
    """Batches run so far by ``name``'s micro-batcher, read from /metrics (0 if not exposed)."""
    try:
        text = httpx.get(f"{base}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0
    prefix = f'arcsearch_batch_size_count{{collection="{name}"}} '
    return int(float(next((line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)), "0")))


def batching_ceiling(embedder_dir: Path, inputs: list, batch: int, *, repeats: int = 15) -> float:
    """In-process items/s at ``batch`` inputs per pass over items/s at 1 (medians of ``repeats`` passes,
    interleaved), on cpu with the service's default ``ThreadPolicy``: what micro-batching can gain at most."""
    embedder = load_embedder(embedder_dir, device="cpu")
    embed = embedder.embed_texts if embedder.modality == "text" else embedder.embed_images
    policy = ThreadPolicy()
    seconds: dict[int, list[float]] = {1: [], batch: []}
    for repeat in range(repeats + 2):
        for size in (1, batch):
            chunk = [inputs[(repeat * batch + j) % len(inputs)] for j in range(size)]
            policy.apply(size)
            started = time.perf_counter()
            embed(chunk)
            if repeat >= 2:  # two warm-up rounds
                seconds[size].append(time.perf_counter() - started)
    return (batch / statistics.median(seconds[batch])) / (1 / statistics.median(seconds[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_collection_args(parser)
    parser.add_argument("--requests", type=int, default=400, help="requests per level (bounded)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap per level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-wait-ms", type=float, default=None, help="ARCSEARCH_BATCH_MAX_WAIT_MS")
    parser.add_argument("--only", choices=["texts", "images"], default=None, help="bench one collection")
    args = parser.parse_args(argv)
    collections_dir = bench_collections(args)
    if args.max_wait_ms is not None:
        os.environ["ARCSEARCH_BATCH_MAX_WAIT_MS"] = str(args.max_wait_ms)

    texts = [item.text for item in read_text_file(args.data_dir / "wordnet_glosses.jsonl")]
    images = [item.path.read_bytes() for item in read_image_folder(args.data_dir / "faces")]
    calls: dict[str, Call] = {
        "texts": lambda c, i: c.post("/v1/collections/texts/search", json={"text": texts[i % len(texts)], "k": args.k}),
        "images": lambda c, i: c.post("/v1/collections/images/search", data={"k": str(args.k)},
                                      files={"file": ("q.pgm", images[i % len(images)], "image/x-portable-graymap")}),
    }
    if args.only:
        calls = {args.only: calls[args.only]}
    rows = []
    with running_server(collections_dir, args.data_dir.resolve()) as base:
        for name, call in calls.items():
            run_load(base, call, clients=4, requests=20, max_s=args.max_seconds)  # warm-up
            for clients in args.levels:
                before = forward_passes(base, name)
                load = run_load(base, call, clients=clients, requests=args.requests, max_s=args.max_seconds)
                rows.append((name, clients, load.qps, load.latencies_s, len(load.failures),
                             forward_passes(base, name) - before))

    sys.stdout.write("| collection | clients | requests | failed | QPS | p50 ms | p99 ms | forward passes |\n"
                     "|---|---|---|---|---|---|---|---|\n")
    for name, clients, qps, latencies, failures, passes in rows:
        sys.stdout.write(f"| {name} | {clients} | {len(latencies)} | {failures} | {qps:.1f} | "
                         f"{percentile_ms(latencies, 50):.1f} | {percentile_ms(latencies, 99):.1f} | {passes} |\n")
    inputs = {"texts": texts, "images": [decode_image(data) for data in images]}
    for name in calls:
        by_clients = {clients: (qps, len(latencies), passes) for n, clients, qps, latencies, _, passes in rows
                      if n == name}
        if 1 in by_clients and len(by_clients) > 1:
            top = max(by_clients)
            qps, done, passes = by_clients[top]
            mean_batch = max(1, round(done / max(passes, 1)))
            ceiling = batching_ceiling(collections_dir / name / "embedder", inputs[name], mean_batch)
            sys.stdout.write(f"{name}: QPS at {top} clients / at 1 client = {qps / by_clients[1][0]:.2f}x; "
                             f"in-process embedder at batch {mean_batch} / batch 1 = {ceiling:.2f}x items/s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
