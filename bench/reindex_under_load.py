"""Searches over HTTP while a re-index job rebuilds the same collection: failures, latency and version switch.

A real server on 127.0.0.1; ``--clients`` loopback clients search the ``texts`` collection for
``--baseline-seconds`` (before), then ``POST /v1/reindex`` re-embeds the whole source file under the data
root while the clients keep searching until the job has finished (during). Prints, per phase, requests,
failed requests, QPS and p50/p99 ms, the index versions the answers came from (the old one until the
swap, then the new one, never a mix within an answer), and the job's items per second.

Usage (collections from ``make demo``, or ``--make-collections DIR`` for a bench set of untrained test
embedders, as in ``bench.http_concurrency``):
    .venv/bin/python -m bench.reindex_under_load --make-collections /tmp/bench-collections --clients 8
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

import httpx

from arcsearch.index.corpus import read_text_file
from bench.http_concurrency import add_collection_args, bench_collections
from bench.http_latency import percentile_ms
from bench.load import LoadResult, run_load
from bench.server_process import running_server

JOB_DONE = {"succeeded", "failed", "interrupted"}


def wait_for_job(base: str, job_id: str, *, timeout_s: float, poll_s: float = 0.5,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{job_id}`` until the job has finished or ``timeout_s`` passed; its last state."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        if job["status"] in JOB_DONE or time.monotonic() > deadline:
            return job
        time.sleep(poll_s)


def searches_during_reindex(base: str, call: Any, *, clients: int, source: str, max_s: float
                            ) -> tuple[LoadResult, dict[str, Any], float]:
    """Start the re-index of ``texts`` from ``source``, load the server until the job ends; (load, job, job s)."""
    stop = threading.Event()
    outcome: dict[str, LoadResult] = {}
    loader = threading.Thread(target=lambda: outcome.update(
        load=run_load(base, call, clients=clients, requests=10**9, max_s=max_s, stop=stop)))
    loader.start()
    time.sleep(0.5)  # the clients are searching before the job starts
    started = time.perf_counter()
    accepted = httpx.post(f"{base}/v1/reindex", json={"collection": "texts", "source": source}, timeout=30)
    accepted.raise_for_status()
    job = wait_for_job(base, accepted.json()["job_id"], timeout_s=max_s)
    job_seconds = time.perf_counter() - started
    time.sleep(0.5)  # and keep searching a moment after the swap
    stop.set()
    loader.join()
    return outcome["load"], job, job_seconds


def version_runs(versions: list[str | None]) -> list[tuple[str | None, int]]:
    """Consecutive runs of equal versions, in order of arrival: [(version, count), ...]."""
    runs: list[tuple[str | None, int]] = []
    for version in versions:
        if runs and runs[-1][0] == version:
            runs[-1] = (version, runs[-1][1] + 1)
        else:
            runs.append((version, 1))
    return runs


def row(phase: str, load: LoadResult) -> str:
    return (f"| {phase} | {len(load.latencies_s)} | {len(load.failures)} | {load.qps:.1f} | "
            f"{percentile_ms(load.latencies_s, 50):.1f} / {percentile_ms(load.latencies_s, 99):.1f} | "
            f"{len(set(load.versions))} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_collection_args(parser)
    parser.add_argument("--source", default="wordnet_glosses.jsonl", help="re-index source under --data-dir")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="cap on the re-index phase")
    parser.add_argument("--job-yield-ms", type=float, default=None, help="ARCSEARCH_JOB_YIELD_MS (0: never wait)")
    args = parser.parse_args(argv)
    if args.job_yield_ms is not None:
        os.environ["ARCSEARCH_JOB_YIELD_MS"] = str(args.job_yield_ms)
    collections_dir = bench_collections(args)
    texts = [item.text for item in read_text_file(args.data_dir / args.source)]

    def call(client: httpx.Client, i: int) -> httpx.Response:
        return client.post("/v1/collections/texts/search", json={"text": texts[(i * 7919) % len(texts)], "k": 5})

    with running_server(collections_dir, args.data_dir.resolve()) as base:
        run_load(base, call, clients=args.clients, requests=50, max_s=30)  # warm-up
        before = run_load(base, call, clients=args.clients, requests=10**9, max_s=args.baseline_seconds)
        during, job, job_seconds = searches_during_reindex(base, call, clients=args.clients, source=args.source,
                                                           max_s=args.max_seconds)
        listed = {c["name"]: c for c in httpx.get(f"{base}/v1/collections", timeout=10).json()["collections"]}

    sys.stdout.write("| phase | requests | failed | QPS | p50 / p99 ms | index versions answering |\n"
                     "|---|---|---|---|---|---|\n" + row("before", before) + "\n" + row("during re-index", during)
                     + "\n\n")
    progress = job["progress"]
    sys.stdout.write(f"job {job['status']}: {progress['done']} of {progress['total']} items "
                     f"({progress['failed']} failed) in {job_seconds:.1f} s = {progress['done'] / job_seconds:.1f} "
                     f"items/s (server's rate {progress.get('rate_items_per_s')}); collection size now "
                     f"{listed['texts']['size']}\n")
    sys.stdout.write("versions in order of answers: " + ", ".join(
        f"{version} x{count}" for version, count in version_runs(during.versions)) + "\n")
    for failure in during.failures[:5] + before.failures[:5]:
        sys.stdout.write(f"failure: {failure}\n")
    return 0 if not (before.failures or during.failures) and job["status"] == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
