"""Listing a collection's items page by page, listing jobs, cancelling jobs; on an app with its own collections."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from arcsearch.service.app import create_app
from tests import bundles
from tests.service.helpers import ServiceData, assert_error, local_client, service_settings, wait_job, wait_ready

EMBEDDER = "embedders/text"
BIG_ROWS = 3000  # embedded one per batch: seconds of work, so a cancel lands while the job runs


@pytest.fixture(scope="module")
def app_client(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app over an empty collections folder; the data root holds a text embedder, a small corpus of 25
    texts and a big one of BIG_ROWS; jobs embed one text per batch and never wait for queries."""
    root = tmp_path_factory.mktemp("listing")
    data_root = root / "data"
    shutil.copytree(service_data.text_embedder, data_root / EMBEDDER)
    texts = service_data.indexed_texts
    bundles.write_jsonl(data_root / "small.jsonl", [{**row, "id": f"p-{i:02d}"} for i, row in enumerate(texts[:25])])
    bundles.write_jsonl(data_root / "big.jsonl", [{**texts[i % len(texts)], "id": f"b-{i}"} for i in range(BIG_ROWS)])
    settings = service_settings(service_data, collections_dir=root / "collections", data_root=data_root,
                                batch_size=1, job_yield_ms=0)
    with local_client(create_app(settings)) as client:
        wait_ready(client)
        yield client


def filled(client: TestClient, name: str, source: str = "small.jsonl") -> dict[str, Any]:
    """Create collection ``name`` and re-index it from ``source``; returns the finished job."""
    assert client.post("/v1/collections", json={"name": name, "embedder": EMBEDDER}).status_code == 201
    job = wait_job(client, client.post("/v1/reindex", json={"collection": name, "source": source}).json()["job_id"])
    assert job["status"] == "succeeded", job
    return job


def version_of(client: TestClient, name: str) -> str:
    return {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}[name]["version"]


def test_pages_cover_every_item_once_while_items_change_between_pages(app_client: TestClient) -> None:
    filled(app_client, "paged")
    url = "/v1/collections/paged/items"
    seen: list[dict[str, Any]] = []
    page = app_client.get(url, params={"limit": 7}).json()
    while True:
        seen += page["items"]
        if len(seen) == 7:  # seen: p-00..p-06; change a seen and an unseen item, delete both kinds, add two
            for item_id in ("p-02", "p-10", "p-99", "a-new"):
                put = app_client.put(f"{url}/{item_id}", json={"text": "a changed text", "label": "changed"})
                assert put.status_code == 200, put.text
            for item_id in ("p-01", "p-20"):
                assert app_client.delete(f"{url}/{item_id}").status_code == 200
        if page["next_cursor"] is None:
            break
        page = app_client.get(url, params={"limit": 7, "cursor": page["next_cursor"]}).json()
    ids = [item["id"] for item in seen]
    throughout = [f"p-{i:02d}" for i in range(25) if i != 20]
    assert len(ids) == len(set(ids)), ids
    assert [i for i in ids if i.startswith("p-") and i != "p-99"] == throughout
    assert "p-99" in ids and "a-new" not in ids  # added after / before the cursor
    for item in seen:
        if item["id"] not in {"p-01", "p-02"}:  # deleted / replaced after they were listed
            assert app_client.get(f"{url}/{item['id']}").json() == item
    assert next(item for item in seen if item["id"] == "p-10")["label"] == "changed"


def test_page_limits_and_bad_cursors_are_422(app_client: TestClient) -> None:
    if "paged" not in {c["name"] for c in app_client.get("/v1/collections").json()["collections"]}:
        filled(app_client, "paged")
    url = "/v1/collections/paged/items"
    everything = app_client.get(url, params={"limit": 1000})
    assert everything.status_code == 200 and everything.json()["next_cursor"] is None
    assert len(everything.json()["items"]) >= 25
    assert len(app_client.get(url).json()["items"]) == len(everything.json()["items"])  # default limit 100
    for limit in (0, 1001, -1):
        assert_error(app_client.get(url, params={"limit": limit}), 422, "validation_error")
    for cursor in ("!!not base64!!", base64.urlsafe_b64encode(b"p-03").decode(), "gA==", "x" * 3000):
        assert_error(app_client.get(url, params={"cursor": cursor}), 422, "validation_error")
    assert_error(app_client.get("/v1/collections/nope/items"), 404, "collection_not_found")
    assert app_client.get(f"{url}/p-03").json()["id"] == "p-03"  # the item route is still reached


def wait_running(client: TestClient, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll until the job has embedded at least one batch."""
    deadline = time.monotonic() + timeout_s
    while (job := client.get(f"/v1/jobs/{job_id}").json())["progress"]["done"] < 1:
        assert job["status"] in {"queued", "running"} and time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


def test_a_running_job_stops_at_its_next_batch_and_the_live_version_stays(app_client: TestClient,
                                                                         tmp_path: Path) -> None:
    filled(app_client, "slow")
    before = version_of(app_client, "slow")
    job_id = app_client.post("/v1/reindex", json={"collection": "slow", "source": "big.jsonl"}).json()["job_id"]
    wait_running(app_client, job_id)
    cancelled = app_client.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "running", cancelled.text
    job = wait_job(app_client, job_id)
    assert job["status"] == "cancelled" and "cancelled" in job["error"], job
    assert job["progress"]["done"] < BIG_ROWS and job["version"] is None
    assert version_of(app_client, "slow") == before
    collections_dir = app_client.app.state.jobs.settings.collections_dir  # type: ignore[attr-defined]
    assert not any((collections_dir / "slow" / "staging").glob("*"))  # no staging version left behind
    assert_error(app_client.post(f"/v1/jobs/{job_id}/cancel"), 409, "job_finished")

    again = app_client.post("/v1/reindex", json={"collection": "slow", "source": "small.jsonl"})
    assert again.status_code == 202, again.text  # the collection is free at once
    assert wait_job(app_client, again.json()["job_id"])["status"] == "succeeded"
    assert version_of(app_client, "slow") != before


def test_a_queued_job_is_cancelled_at_once(app_client: TestClient) -> None:
    jobs = app_client.app.state.jobs  # type: ignore[attr-defined]
    jobs.store.create("queued-job", "slow", "big.jsonl")  # what a submit records before its thread starts
    answer = app_client.post("/v1/jobs/queued-job/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.text
    assert answer.json()["finished_at"] is not None and answer.json()["started_at"] is None
    assert_error(app_client.post("/v1/jobs/queued-job/cancel"), 409, "job_finished")
    assert_error(app_client.post("/v1/jobs/no-such-job/cancel"), 404, "job_not_found")


def test_jobs_are_listed_newest_first_and_filtered(app_client: TestClient) -> None:
    filled(app_client, "listed-a")
    filled(app_client, "listed-b")
    last = wait_job(app_client, app_client.post("/v1/reindex", json={"collection": "listed-a",
                                                                     "source": "small.jsonl"}).json()["job_id"])
    everything = app_client.get("/v1/jobs").json()["jobs"]
    assert everything[0]["job_id"] == last["job_id"]
    created = [job["created_at"] for job in everything]
    assert created == sorted(created, reverse=True)
    of_a = app_client.get("/v1/jobs", params={"collection": "listed-a"}).json()["jobs"]
    assert [job["collection"] for job in of_a] == ["listed-a", "listed-a"] and of_a[0]["job_id"] == last["job_id"]
    succeeded = app_client.get("/v1/jobs", params={"status": "succeeded", "collection": "listed-b"}).json()["jobs"]
    assert len(succeeded) == 1 and succeeded[0]["status"] == "succeeded"
    assert app_client.get("/v1/jobs", params={"status": "cancelled", "collection": "listed-b"}).json()["jobs"] == []
    assert [job["job_id"] for job in app_client.get("/v1/jobs", params={"limit": 1}).json()["jobs"]] == \
        [last["job_id"]]
    assert_error(app_client.get("/v1/jobs", params={"status": "bogus"}), 422, "validation_error")
    assert_error(app_client.get("/v1/jobs", params={"limit": 1001}), 422, "validation_error")
    assert_error(app_client.get("/v1/jobs", params={"collection": "Not A Name"}), 422, "validation_error")
