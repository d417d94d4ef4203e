"""Reliability under hostile load: mixed searches, a re-index and a burst of unauthenticated requests at once.

A real server on 127.0.0.1 with API keys. For ``--seconds`` (60) ``--clients`` (16) loopback clients search
with a read key, alternating text and image queries; a few seconds in, an admin re-indexes ``texts`` from its
source file; a little later a burst of hostile requests *without a key* arrives (large JSON bodies, deeply
nested JSON, unknown HTTP methods that would bloat ``/metrics``, oversized image uploads, a foreign Host
header) and, with ``--keyed-bombs``, parallel image searches *with the read key* whose PNGs are tiny files of
6300 x 6300 pixels (each would decode to 119 MB), while a prober times ``GET /healthz`` every 50 ms and a
sampler reads the server's resident memory.
Everything is bounded in count and time and sent to loopback only.

Prints: requests served, 5xx answers (to anyone), searches failed, p50/p99 of searches, the server's peak RSS
(``VmHWM``), ``/healthz`` p50/p99/max during the burst, the hostile requests by status, ``/metrics`` size, and
the re-index job's end state. Exit status 1 if a search failed, or a hostile request met a transport error
or a 5xx other than 503 (a shed request, with ``Retry-After``, is the designed answer to overload).

Usage (collections from ``make demo``, or ``--make-collections DIR`` for a bench set of untrained test
embedders, as in ``bench.http_concurrency``):
    .venv/bin/python -m bench.reliability --make-collections /tmp/bench-collections --data-dir data
"""

from __future__ import annotations

import argparse
import collections
import io
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from arcsearch.index.corpus import read_image_folder, read_text_file
from bench.http_concurrency import add_collection_args, bench_collections
from bench.http_latency import percentile_ms
from bench.load import LoadResult, run_load
from bench.reindex_under_load import wait_for_job
from bench.server_process import server_process

MiB = 1024 * 1024


@dataclass
class Burst:
    """Statuses (or transport error names) of the hostile requests, counted."""

    statuses: collections.Counter = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, outcome: int | str) -> None:
        with self.lock:
            self.statuses[(kind, outcome)] += 1


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A memory field of ``/proc/<pid>/status`` in KiB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def bomb_png(side_px: int) -> bytes:
    """A PNG of ``side_px`` x ``side_px`` black pixels: a few hundred KiB that decode to side_px² x 3 bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (side_px, side_px)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def hostile_requests(base: str, burst: Burst, *, rounds: int, json_mib: int) -> None:
    """One round: a large JSON body, a deep one, 200 unknown methods, a bomb upload, a foreign Host; no key."""
    big_json = b"[" + b"[]," * (json_mib * MiB // 3) + b"[]]"
    deep_json = b'{"text": "x", "filter": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bomb = bomb_png(6300)
    senders: list[tuple[str, Callable[[httpx.Client], httpx.Response]]] = [
        ("big_json", lambda c: c.post("/v1/collections/texts/search", content=big_json,
                                      headers={"content-type": "application/json"})),
        ("deep_json", lambda c: c.post("/v1/collections/texts/search", content=deep_json,
                                       headers={"content-type": "application/json"})),
        ("bomb_png", lambda c: c.post("/v1/collections/images/search",
                                      files=[("file", ("b.png", bomb, "image/png"))] * 8)),
        ("foreign_host", lambda c: c.delete("/v1/collections/texts", headers={"host": "evil.example"})),
    ]
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(rounds):
            for kind, send in senders:
                try:
                    burst.record(kind, send(client).status_code)
                except httpx.HTTPError as exc:
                    burst.record(kind, type(exc).__name__)
            for i in range(200):
                try:
                    burst.record("odd_method", client.request(f"M{i}", f"/x{i}").status_code)
                except httpx.HTTPError as exc:
                    burst.record("odd_method", type(exc).__name__)


def keyed_bombs(base: str, burst: Burst, *, requests: int, headers: dict[str, str]) -> None:
    """``requests`` image searches at once, each of 16 tiny PNGs that decode to 6300 x 6300 pixels, with a key."""
    parts = [("file", (f"{i}.png", bomb_png(6300), "image/png")) for i in range(16)]

    def send(_: int) -> None:
        with httpx.Client(base_url=base, timeout=300) as client:
            try:
                response = client.post("/v1/collections/images/search", files=parts, headers=headers,
                                       data={"k": "1"})
                burst.record("keyed_bomb_png", response.status_code)
            except httpx.HTTPError as exc:
                burst.record("keyed_bomb_png", type(exc).__name__)
    threads = [threading.Thread(target=send, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def probe(base: str, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    """``GET /healthz`` every 50 ms until ``stop``: (monotonic start, seconds) per probe (inf on error)."""
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                ok = client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            samples.append((started, time.monotonic() - started if ok else float("inf")))
            stop.wait(0.05)


def sample_rss(pid: int, stop: threading.Event, samples: list[int]) -> None:
    while not stop.is_set():
        samples.append(rss_kib(pid))
        stop.wait(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_collection_args(parser)
    parser.add_argument("--source", default="wordnet_glosses.jsonl", help="re-index source under --data-dir")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burst-rounds", type=int, default=5, help="rounds of hostile requests")
    parser.add_argument("--json-mib", type=int, default=16, help="size of each large unauthenticated JSON body")
    parser.add_argument("--keyed-bombs", type=int, default=0,
                        help="parallel image searches with the read key, 16 huge-but-tiny PNGs each (0: none)")
    args = parser.parse_args(argv)
    collections_dir = bench_collections(args)
    texts = [item.text for item in read_text_file(args.data_dir / args.source)]
    images = [item.path.read_bytes() for item in read_image_folder(args.data_dir / "faces")]
    read_key, admin_key = secrets.token_hex(16), secrets.token_hex(16)
    read_auth, admin_auth = {"authorization": f"Bearer {read_key}"}, {"authorization": f"Bearer {admin_key}"}

    def search(client: httpx.Client, i: int) -> httpx.Response:
        if i % 2:
            return client.post("/v1/collections/images/search", data={"k": "5"}, headers=read_auth,
                               files={"file": ("q.pgm", images[i % len(images)], "image/x-portable-graymap")})
        return client.post("/v1/collections/texts/search", json={"text": texts[(i * 7919) % len(texts)], "k": 5},
                           headers=read_auth)

    env = {"ARCSEARCH_READ_KEYS": read_key, "ARCSEARCH_ADMIN_KEYS": admin_key}
    with server_process(collections_dir, args.data_dir.resolve(), env=env, ready_headers=read_auth) as (base, proc):
        report = run_scenario(base, proc, search, args=args, admin_auth=admin_auth, read_auth=read_auth)
        metrics_bytes = len(httpx.get(f"{base}/metrics", headers=read_auth, timeout=10).content)
        job = wait_for_job(base, report["job_id"], timeout_s=600, headers=admin_auth)
        peak_kib = rss_kib(proc.pid, "VmHWM")
    write_report(report, job=job, peak_kib=peak_kib, metrics_bytes=metrics_bytes)
    load: LoadResult = report["load"]
    server_errors = [f for f in load.failures if f[:1] == "5" or not f[:1].isdigit()]
    hostile_errors = sum(n for (_, outcome), n in report["burst"].statuses.items()
                         if not isinstance(outcome, int) or (outcome >= 500 and outcome != 503))
    return 1 if server_errors or hostile_errors else 0


def run_scenario(base: str, proc: subprocess.Popen, search: Callable, *, args: argparse.Namespace,
                 admin_auth: dict[str, str], read_auth: dict[str, str]) -> dict:
    """Load, re-index, burst, probe and sample at once; what each part saw."""
    stop = threading.Event()
    health: list[tuple[float, float]] = []
    rss: list[int] = []
    threads = [threading.Thread(target=probe, args=(base, stop, health), daemon=True),
               threading.Thread(target=sample_rss, args=(proc.pid, stop, rss), daemon=True)]
    for thread in threads:
        thread.start()
    outcome: dict[str, LoadResult] = {}
    loader = threading.Thread(target=lambda: outcome.update(
        load=run_load(base, search, clients=args.clients, requests=10**9, max_s=args.seconds)))
    loader.start()
    time.sleep(min(5.0, args.seconds / 10))
    accepted = httpx.post(f"{base}/v1/reindex", json={"collection": "texts", "source": args.source},
                          headers=admin_auth, timeout=30)
    accepted.raise_for_status()
    time.sleep(min(5.0, args.seconds / 10))
    burst = Burst()
    burst_started = time.monotonic()
    hostile_requests(base, burst, rounds=args.burst_rounds, json_mib=args.json_mib)
    if args.keyed_bombs:
        keyed_bombs(base, burst, requests=args.keyed_bombs, headers=read_auth)
    burst_window = (burst_started, time.monotonic())
    loader.join()
    stop.set()
    for thread in threads:
        thread.join()
    during = [s for t, s in health if burst_window[0] <= t <= burst_window[1]]
    return {"load": outcome["load"], "burst": burst, "health_during_burst": during, "burst_s": burst_window[1]
            - burst_window[0], "rss_kib": rss, "job_id": accepted.json()["job_id"]}


def write_report(report: dict, *, job: dict, peak_kib: int, metrics_bytes: int) -> None:
    load: LoadResult = report["load"]
    by_status = collections.Counter(f.split(":", 1)[0] for f in load.failures)
    health = np.asarray(report["health_during_burst"] or [float("nan")])
    finite = health[np.isfinite(health)]
    out = sys.stdout
    out.write("| what | value |\n|---|---|\n")
    out.write(f"| searches answered 200 | {len(load.latencies_s) - len(load.failures)} in {load.seconds:.0f} s |\n")
    out.write(f"| searches not 200 | {len(load.failures)} {dict(by_status)} |\n")
    out.write(f"| search p50 / p99 ms | {percentile_ms(load.latencies_s, 50):.1f} / "
              f"{percentile_ms(load.latencies_s, 99):.1f} |\n")
    sampled_mib = max(report["rss_kib"], default=0) / 1024
    out.write(f"| server peak RSS (VmHWM) | {peak_kib / 1024:.0f} MiB (sampled max {sampled_mib:.0f} MiB) |\n")
    out.write(f"| /healthz during the burst ({report['burst_s']:.1f} s) | {len(health)} probes, "
              f"{int((~np.isfinite(health)).sum())} failed, p50 {np.percentile(finite, 50) * 1000:.1f} ms, "
              f"p99 {np.percentile(finite, 99) * 1000:.1f} ms, max {finite.max() * 1000:.1f} ms |\n")
    out.write(f"| /metrics size after the burst | {metrics_bytes / 1024:.0f} KiB |\n")
    out.write(f"| re-index job | {job['status']}, {job['progress']['done']} of {job['progress']['total']} items |\n")
    out.write("\nhostile requests (without a key, but keyed_bomb_png) by kind and answer:\n")
    for (kind, outcome), count in sorted(report["burst"].statuses.items(), key=str):
        out.write(f"- {kind}: {outcome} x{count}\n")
    for failure in load.failures[:5]:
        out.write(f"failure: {failure}\n")


if __name__ == "__main__":
    raise SystemExit(main())
