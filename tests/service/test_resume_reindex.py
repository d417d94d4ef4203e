"""SIGKILL a real server during a sharded re-index, restart it and submit the job again: it resumes from the
finished shards (``progress.resumed``), and the published index has every item once, with the vectors of an
uninterrupted build."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import numpy as np

from arcsearch.index.collections import current_index_dir, index_collection
from arcsearch.index.store import IndexStore
from tests import bundles
from tests.service.helpers import ServiceData, finish, live_server

ITEMS, BATCH, SHARD = 160, 8, 16
SETTINGS = {"batch_size": str(BATCH), "reindex_shard_items": str(SHARD)}


def stored(root: Path, name: str) -> tuple[np.ndarray, list[str]]:
    store = IndexStore.load(current_index_dir(root, name))
    return store.index.reconstruct_n(0, store.index.ntotal), [r.external_id for r in store.items.iter_records()]


def test_a_killed_job_submitted_again_resumes_from_its_shards(service_data: ServiceData, tmp_path: Path) -> None:
    texts = service_data.indexed_texts
    rows = [{"id": f"new-{i}", "text": f"{texts[i % len(texts)]['text']} ({i})"} for i in range(ITEMS)]
    data = tmp_path / "data"
    source = bundles.write_jsonl(data / "new.jsonl", rows)
    old = bundles.write_jsonl(tmp_path / "old.jsonl", rows[:10])
    root, reference, log = tmp_path / "collections", tmp_path / "reference", tmp_path / "server.log"
    index_collection(root, "resume", service_data.text_embedder, old, device="cpu", batch_size=BATCH)
    index_collection(reference, "resume", service_data.text_embedder, source, device="cpu", batch_size=BATCH,
                     shard_items=SHARD)
    shards = root / "resume" / "shards"

    with live_server(root, data, log, **SETTINGS) as (url, proc):
        job_id = httpx.post(f"{url}/v1/reindex", json={"collection": "resume", "source": "new.jsonl"},
                            timeout=30).json()["job_id"]
        deadline = time.monotonic() + 300
        while len(list(shards.glob("*/shard-*.json"))) < 3:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        running = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert running["status"] == "running" and running["progress"]["done"] >= 3 * SHARD, running
    assert running["progress"]["eta_s"] > 0 and running["progress"]["resumed"] == 0, running
    finished = len(list(shards.glob("*/shard-*.json")))
    assert 3 <= finished < ITEMS // SHARD

    with live_server(root, data, log, **SETTINGS) as (url, _):
        assert httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()["status"] == "interrupted"
        again = httpx.post(f"{url}/v1/reindex", json={"collection": "resume", "source": "new.jsonl"}, timeout=30)
        job = finish(url, again.json()["job_id"])
        assert job["status"] == "succeeded" and job["num_items"] == ITEMS, job
        progress = job["progress"]
        assert progress["resumed"] >= finished * SHARD and progress["done"] == progress["total"] == ITEMS, job
        assert progress["rate_items_per_s"] > 0 and progress["eta_s"] is None
    vectors, ids = stored(root, "resume")
    expected_vectors, expected_ids = stored(reference, "resume")
    assert ids == expected_ids == [row["id"] for row in rows]
    np.testing.assert_allclose(vectors, expected_vectors, atol=1e-5)
    assert not list(shards.glob("*/shard-*")), "the shards outlived the published index"
