"""SIGKILL a real server midway through a re-index: after a restart the last complete index is served whole.

The job is reported ``interrupted`` (its state is in SQLite), the collection still has its previous
version with every one of its items, and a new job runs normally.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from arcsearch.index.collections import current_version, index_collection
from tests import bundles
from tests.service.helpers import ServiceData, live_server

OLD_ITEMS = 20


def test_sigkill_during_reindex_keeps_the_last_complete_index(service_data: ServiceData, tmp_path: Path) -> None:
    rows = service_data.indexed_texts
    old = bundles.write_jsonl(tmp_path / "data" / "old.jsonl",
                              [{**row, "id": f"old-{i}"} for i, row in enumerate(rows[:OLD_ITEMS])])
    root = tmp_path / "collections"
    index_collection(root, "kill", service_data.text_embedder, old, device="cpu", batch_size=32)
    old_version = current_version(root, "kill")
    items = [{"id": f"new-{i}", "text": rows[i % len(rows)]["text"], "label": "x"} for i in range(400)]
    log = tmp_path / "server.log"

    with live_server(root, tmp_path / "data", log, batch_size="2") as (url, proc):
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

    with live_server(root, tmp_path / "data", log, batch_size="2") as (url, _):
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        assert job["status"] == "interrupted" and "stopped" in job["error"], job
        listed = {c["name"]: c for c in httpx.get(f"{url}/v1/collections", timeout=10).json()["collections"]}
        assert (listed["kill"]["size"], listed["kill"]["version"]) == (OLD_ITEMS, old_version)
        hits = httpx.post(f"{url}/v1/collections/kill/search", json={"text": "anything", "k": 50},
                          timeout=30).json()["queries"][0]["hits"]
        assert sorted(hit["id"] for hit in hits) == sorted(f"old-{i}" for i in range(OLD_ITEMS))
        again = httpx.post(f"{url}/v1/reindex", json={"collection": "kill", "items": items[:5]}, timeout=30)
        assert again.status_code == 202, again.text
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{url}/v1/jobs/{again.json()['job_id']}", timeout=10).json())["status"] in {
                "queued", "running"}:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["status"] == "succeeded" and job["num_items"] == 5, job
