"""SIGKILL a real server midway through a re-index: after a restart the last complete index is served whole.

The job is reported ``interrupted`` (its state is in SQLite), the collection still has its previous
version with every one of its items, and a new job runs normally. On both backends (``backend``): a FAISS
version named by CURRENT, or the Milvus version the collection's alias names.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.service.helpers import ServiceData, finish, live_server

OLD_ITEMS = 20
EMBEDDER = "embedders/text"


def listed(url: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in httpx.get(f"{url}/v1/collections", timeout=30).json()["collections"]}


def test_sigkill_during_reindex_keeps_the_last_complete_index(service_data: ServiceData, tmp_path: Path,
                                                              backend_env: dict[str, str]) -> None:
    rows = service_data.indexed_texts
    old = [{"id": f"old-{i}", "text": row["text"], "label": row["label"]} for i, row in enumerate(rows[:OLD_ITEMS])]
    items = [{"id": f"new-{i}", "text": rows[i % len(rows)]["text"], "label": "x"} for i in range(400)]
    shutil.copytree(service_data.text_embedder, tmp_path / "data" / EMBEDDER)
    root, log = tmp_path / "collections", tmp_path / "server.log"

    with live_server(root, tmp_path / "data", log, batch_size="2", **backend_env) as (url, proc):
        created = httpx.post(f"{url}/v1/collections", json={"name": "kill", "embedder": EMBEDDER}, timeout=60)
        assert created.status_code == 201, created.text
        first = httpx.post(f"{url}/v1/reindex", json={"collection": "kill", "items": old}, timeout=30)
        assert finish(url, first.json()["job_id"])["status"] == "succeeded"
        old_version = listed(url)["kill"]["version"]
        accepted = httpx.post(f"{url}/v1/reindex", json={"collection": "kill", "items": items}, timeout=30)
        job_id = accepted.json()["job_id"]
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json())["progress"]["done"] < 10:
            assert job["status"] in {"queued", "running"} and time.monotonic() < deadline, job
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert job["status"] == "running" and job["progress"]["done"] < len(items), job

    with live_server(root, tmp_path / "data", log, batch_size="2", **backend_env) as (url, _):
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        assert job["status"] == "interrupted" and "stopped" in job["error"], job
        assert (listed(url)["kill"]["size"], listed(url)["kill"]["version"]) == (OLD_ITEMS, old_version)
        hits = httpx.post(f"{url}/v1/collections/kill/search", json={"text": "anything", "k": 50},
                          timeout=30).json()["queries"][0]["hits"]
        assert sorted(hit["id"] for hit in hits) == sorted(f"old-{i}" for i in range(OLD_ITEMS))
        again = httpx.post(f"{url}/v1/reindex", json={"collection": "kill", "items": items[:5]}, timeout=30)
        assert again.status_code == 202, again.text
        job = finish(url, again.json()["job_id"])
        assert job["status"] == "succeeded" and job["num_items"] == 5, job
        assert httpx.delete(f"{url}/v1/collections/kill", timeout=60).status_code == 204
