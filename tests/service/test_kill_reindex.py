"""SIGKILL a real server midway through a re-index: after a restart the last complete index is served whole.

The job is reported ``interrupted`` (its state is in SQLite), the collection still has its previous
version with every one of its items, and a new job runs normally.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from index.collections import current_version, index_collection
from tests import bundles
from tests.bundles import REPO
from tests.service.helpers import ServiceData
from tests.service.test_http_live import START_TIMEOUT_S, free_port

OLD_ITEMS = 20


@contextmanager
def server(collections_dir: Path, data_root: Path, log_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "ARCSEARCH_COLLECTIONS_DIR": str(collections_dir),
           "ARCSEARCH_DATA_ROOT": str(data_root), "ARCSEARCH_DEVICE": "cpu", "ARCSEARCH_HOST": "127.0.0.1",
           "ARCSEARCH_PORT": str(port), "ARCSEARCH_BATCH_SIZE": "2"}
    url = f"http://127.0.0.1:{port}"
    with log_path.open("a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.server"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                assert proc.poll() is None, f"server exited early:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"server not ready in time:\n{log_path.read_text()}"
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def test_sigkill_during_reindex_keeps_the_last_complete_index(service_data: ServiceData, tmp_path: Path) -> None:
    rows = service_data.indexed_texts
    old = bundles.write_jsonl(tmp_path / "data" / "old.jsonl",
                              [{**row, "id": f"old-{i}"} for i, row in enumerate(rows[:OLD_ITEMS])])
    root = tmp_path / "collections"
    index_collection(root, "kill", service_data.text_embedder, old, device="cpu", batch_size=32)
    old_version = current_version(root, "kill")
    items = [{"id": f"new-{i}", "text": rows[i % len(rows)]["text"], "label": "x"} for i in range(400)]
    log = tmp_path / "server.log"

    with server(root, tmp_path / "data", log) as (url, proc):
        accepted = httpx.post(f"{url}/v1/reindex", json={"collection": "kill", "items": items}, timeout=30)
        job_id = accepted.json()["job_id"]
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json())["progress"]["done"] < 10:
            assert job["status"] in {"queued", "running"} and time.monotonic() < deadline, job
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert job["status"] == "running" and job["progress"]["done"] < len(items), job
    assert current_version(root, "kill") == old_version

    with server(root, tmp_path / "data", log) as (url, _):
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        assert job["status"] == "interrupted" and "stopped" in job["error"], job
        listed = {c["name"]: c for c in httpx.get(f"{url}/v1/collections", timeout=10).json()["collections"]}
        assert (listed["kill"]["size"], listed["kill"]["version"]) == (OLD_ITEMS, old_version)
        hits = httpx.post(f"{url}/v1/texts/search", json={"text": "anything", "k": 50, "collection": "kill"},
                          timeout=30).json()["results"]
        assert sorted(hit["id"] for hit in hits) == sorted(f"old-{i}" for i in range(OLD_ITEMS))
        again = httpx.post(f"{url}/v1/reindex", json={"collection": "kill", "items": items[:5]}, timeout=30)
        assert again.status_code == 202, again.text
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{url}/v1/jobs/{again.json()['job_id']}", timeout=10).json())["status"] in {
                "queued", "running"}:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["status"] == "succeeded" and job["num_items"] == 5, job
