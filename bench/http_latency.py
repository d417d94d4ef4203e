"""Query latency over HTTP against the same work done in-process (embed + FAISS search), one client.

The in-process path is what the service runs for one query: the same embedder and index, with the service's
``ThreadPolicy`` (a single input gets one torch thread), so the difference is what HTTP, validation and
the micro-batcher add. A second in-process column uses torch's default threads (all cores), what a caller
embedding in its own process would get. The paths are timed in alternation, query by query, so the drift
of a shared machine hits them alike.

Usage (after `make demo` or `arcsearch index ...` wrote the collections):
    .venv/bin/python -m bench.http_latency --collections-dir artifacts/collections --requests 200
Prints p50/p99 in ms for each path, the HTTP/in-process ratio at p50 (target <= 1.5) and the added ms.
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
import torch

from arcsearch.index.collections import current_index_dir, embedder_dir
from arcsearch.index.corpus import read_image_folder, read_text_file
from arcsearch.index.embedder import ThreadPolicy, load_embedder
from arcsearch.index.preprocess import decode_image
from arcsearch.index.store import IndexStore
from bench.server_process import running_server

logger = logging.getLogger(__name__)


def percentile_ms(samples_s: list[float], q: float) -> float:
    """The q-th percentile (0..100) of durations in seconds, in milliseconds."""
    return float(np.percentile(np.asarray(samples_s) * 1000.0, q))


def time_alternating(calls: dict[str, Callable[[int], object]], *, count: int, warmup: int) -> dict[str, list[float]]:
    """Durations in seconds of each ``call(i)`` for i in range(count), the calls taken in turn for every i,
    after ``warmup`` untimed rounds."""
    for i in range(warmup):
        for call in calls.values():
            call(i)
    durations: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(count):
        for name, call in calls.items():
            started = time.perf_counter()
            call(i)
            durations[name].append(time.perf_counter() - started)
    return durations


def with_threads(call: Callable[[int], object], threads: Callable[[], None]) -> Callable[[int], object]:
    """``call`` with torch's intra-op threads set by ``threads()`` first; that is timed too, as the service's
    worker also sets them before every pass."""
    def wrapped(i: int) -> object:
        threads()
        return call(i)
    return wrapped


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

    def in_process(name: str) -> Callable[[int], object]:
        embedder = load_embedder(embedder_dir(args.collections_dir, name), device="cpu")
        store = IndexStore.load(current_index_dir(args.collections_dir, name))
        if name == "texts":
            return lambda i: store.search(embedder.embed_texts([texts[i % len(texts)]]), args.k)
        return lambda i: store.search(embedder.embed_images([decode_image(image_bytes[i % len(image_bytes)])]),
                                      args.k)

    policy = ThreadPolicy()
    default_threads = torch.get_num_threads()
    rows = []
    with running_server(args.collections_dir, args.data_dir.resolve()) as base, httpx.Client(timeout=30) as client:
        http_calls = {
            "texts": lambda i: client.post(f"{base}/v1/collections/texts/search",
                                           json={"text": texts[i % len(texts)], "k": args.k}).raise_for_status(),
            "images": lambda i: client.post(
                f"{base}/v1/collections/images/search", data={"k": str(args.k)},
                files={"file": ("q.pgm", image_bytes[i % len(image_bytes)], "image/x-portable-graymap")},
            ).raise_for_status(),
        }
        for name in ("texts", "images"):
            local_call = in_process(name)
            times = time_alternating({
                "policy": with_threads(local_call, lambda: policy.apply(1)),
                "default": with_threads(local_call, lambda: torch.set_num_threads(default_threads)),
                "http": http_calls[name]}, count=args.requests, warmup=args.warmup)
            rows.append((name, times))

    sys.stdout.write("| collection | in-process, service threads: p50 / p99 ms | in-process, all cores: p50 / p99 ms "
                     "| HTTP p50 / p99 ms | HTTP / in-process (p50) | added p50 ms |\n|---|---|---|---|---|---|\n")
    for name, times in rows:
        local, remote = statistics.median(times["policy"]), statistics.median(times["http"])
        cells = [f"{percentile_ms(times[key], 50):.1f} / {percentile_ms(times[key], 99):.1f}"
                 for key in ("policy", "default", "http")]
        sys.stdout.write(f"| {name} | {' | '.join(cells)} | {remote / local:.2f}x | {(remote - local) * 1000:.1f} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
