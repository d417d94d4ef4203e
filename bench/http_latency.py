"""Query latency over HTTP against the same work done in-process (embed + FAISS search), one client.

Usage (after `make demo` or `arcsearch index ...` wrote the collections):
    .venv/bin/python -m bench.http_latency --collections-dir artifacts/collections --requests 200
Prints p50/p99 in ms for each path and the HTTP/in-process ratio at p50 (target <= 1.5).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from bench.server_process import running_server
from index.collections import current_index_dir, embedder_dir
from index.corpus import read_image_folder, read_text_file
from index.embedder import load_embedder
from index.preprocess import decode_image
from index.store import IndexStore

logger = logging.getLogger(__name__)


def percentile_ms(samples_s: list[float], q: float) -> float:
    """The q-th percentile (0..100) of durations in seconds, in milliseconds."""
    return float(np.percentile(np.asarray(samples_s) * 1000.0, q))


def time_calls(call: Callable[[int], object], *, count: int, warmup: int) -> list[float]:
    """Durations in seconds of ``call(i)`` for i in range(count), after ``warmup`` untimed calls."""
    for i in range(warmup):
        call(i)
    durations = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        durations.append(time.perf_counter() - started)
    return durations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections-dir", type=Path, default=Path("artifacts/collections"))
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    texts = [item.text for item in read_text_file(args.data_dir / "wordnet_glosses.jsonl")]
    image_paths = [item.path for item in read_image_folder(args.data_dir / "faces")]
    image_bytes = [path.read_bytes() for path in image_paths]

    def in_process(name: str) -> tuple[Callable[[int], object], object]:
        embedder = load_embedder(embedder_dir(args.collections_dir, name), device="cpu")
        store = IndexStore.load(current_index_dir(args.collections_dir, name))
        if name == "texts":
            return (lambda i: store.search(embedder.embed_texts([texts[i % len(texts)]]), args.k)), embedder
        return (lambda i: store.search(embedder.embed_images([decode_image(image_bytes[i % len(image_bytes)])]),
                                       args.k)), embedder

    rows = []
    with running_server(args.collections_dir, args.data_dir.resolve()) as base, httpx.Client(timeout=30) as client:
        http_calls = {
            "texts": lambda i: client.post(f"{base}/v1/texts/search",
                                           json={"text": texts[i % len(texts)], "k": args.k}).raise_for_status(),
            "images": lambda i: client.post(
                f"{base}/v1/images/search", data={"k": str(args.k)},
                files={"file": ("q.pgm", image_bytes[i % len(image_bytes)], "image/x-portable-graymap")},
            ).raise_for_status(),
        }
        for name in ("texts", "images"):
            local_call, _ = in_process(name)
            local = time_calls(local_call, count=args.requests, warmup=args.warmup)
            remote = time_calls(http_calls[name], count=args.requests, warmup=args.warmup)
            rows.append((name, local, remote))

    sys.stdout.write("| collection | in-process p50 / p99 ms | HTTP p50 / p99 ms | HTTP / in-process (p50) |\n"
                     "|---|---|---|---|\n")
    for name, local, remote in rows:
        ratio = statistics.median(remote) / statistics.median(local)
        sys.stdout.write(f"| {name} | {percentile_ms(local, 50):.1f} / {percentile_ms(local, 99):.1f} | "
                         f"{percentile_ms(remote, 50):.1f} / {percentile_ms(remote, 99):.1f} | {ratio:.2f}x |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
