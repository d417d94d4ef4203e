"""Searches, upserts, deletes and a re-index on one collection at the same time: no failed request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient

from tests.service.helpers import ServiceData, wait_job

BASE = "/v1/collections/scratch2"


def test_searches_upserts_and_a_reindex_at_once(client: TestClient, service_data: ServiceData) -> None:
    statuses: Counter[tuple[str, int]] = Counter()
    failures: list[Any] = []
    stop = threading.Event()
    lock = threading.Lock()

    def record(kind: str, response: Any, allowed: set[int]) -> None:
        with lock:
            statuses[(kind, response.status_code)] += 1
            if response.status_code not in allowed:
                failures.append((kind, response.status_code, response.text[:200]))

    def searcher(i: int) -> None:
        while not stop.is_set():
            body = {"texts": ["a kind of tool", "an animal"], "k": 5}
            if i % 2:
                body["filter"] = {"label": service_data.indexed_texts[0]["label"]}
            record("search", client.post("/v1/collections/scratch2/search", json=body), {200})

    def writer() -> None:
        n = 0
        while not stop.is_set():
            item = {"text": f"a concurrent item number {n}", "label": "concurrent"}
            record("put", client.put(f"{BASE}/items/c-{n}", json=item), {200})
            if n % 2:
                record("delete", client.delete(f"{BASE}/items/c-{n - 1}"), {200, 404})  # 404: a swap came first
            n += 1

    threads = [threading.Thread(target=searcher, args=(i,)) for i in range(3)] + [threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        items = [{"id": f"r-{i}", "text": row["text"], "label": row["label"]}
                 for i, row in enumerate(service_data.indexed_texts[:60])]
        job = wait_job(client, client.post("/v1/reindex", json={"collection": "scratch2", "items": items})
                       .json()["job_id"])
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert job["status"] == "succeeded", job
    assert failures == [], failures[:5]
    assert statuses[("search", 200)] >= 10 and statuses[("put", 200)] >= 5, statuses
