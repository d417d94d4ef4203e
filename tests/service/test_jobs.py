"""Re-index jobs: state in SQLite across restarts, per-item failures, the max-failures policy."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from arcsearch.service.core.errors import JobsUnavailableError, StorageBusyError
from arcsearch.service.core.jobstore import JobStore
from arcsearch.service.errors import domain_status, retry_after_header
from tests.service.helpers import ServiceData, wait_job
from tests.service.test_app import png_base64


def test_jobs_survive_a_restart_and_running_ones_become_interrupted(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    store.create("done1", "texts", "a.jsonl")
    store.update("done1", status="succeeded", done=3, total=3, num_items=3, version="v1")
    store.create("run1", "texts", "b.jsonl")
    store.update("run1", status="running", done=1, total=3)
    assert store.add_failure("run1", "t7", "empty text") == 1
    store.close()
    reopened = JobStore(tmp_path / "jobs.sqlite")
    assert reopened.mark_interrupted() == ["run1"]
    done, run = reopened.get("done1"), reopened.get("run1")
    assert done is not None and run is not None
    assert (done.status, done.version, done.progress.done) == ("succeeded", "v1", 3)
    assert run.status == "interrupted" and "stopped" in (run.error or "") and run.finished_at
    assert (run.progress.failed, [(f.id, f.reason) for f in run.failures]) == (1, [("t7", "empty text")])
    assert reopened.counts_by_state() == {"succeeded": 1, "interrupted": 1}
    reopened.prune(1)
    assert reopened.get("done1") is None or reopened.get("run1") is None


def junk_items(service_data: ServiceData, junk: int) -> list[dict]:
    from PIL import Image

    faces = [Image.open(service_data.faces_dir / "s9" / f"{n}.pgm") for n in (1, 2)]
    items = [{"id": f"ok-{i}", "image_base64": png_base64(face), "label": "s9"} for i, face in enumerate(faces)]
    return items + [{"id": f"junk-{i}", "image_base64": base64.b64encode(b"GIF89a broken").decode()}
                    for i in range(junk)]


@pytest.fixture()
def strict(client: TestClient) -> Iterator[TestClient]:
    jobs = client.app.state.jobs  # type: ignore[attr-defined]
    plain = jobs.settings
    jobs.settings = plain.model_copy(update={"job_max_failures": 1})
    try:
        yield client
    finally:
        jobs.settings = plain


def test_failed_items_are_reported_and_too_many_abort_the_job(strict: TestClient, service_data: ServiceData) -> None:
    body = {"collection": "scratch-images", "items": junk_items(service_data, 1)}
    job = wait_job(strict, strict.post("/v1/reindex", json=body).json()["job_id"])
    assert job["status"] == "succeeded" and job["num_items"] == 2, job
    assert job["progress"]["failed"] == 1 and job["failures"][0]["id"] == "junk-0"
    assert "unreadable image" in job["failures"][0]["reason"]
    version = job["version"]

    body = {"collection": "scratch-images", "items": junk_items(service_data, 2)}
    job = wait_job(strict, strict.post("/v1/reindex", json=body).json()["job_id"])
    assert job["status"] == "failed" and "JOB_MAX_FAILURES" in job["error"], job
    assert [f["id"] for f in job["failures"]] == ["junk-0", "junk-1"]
    listed = {c["name"]: c for c in strict.get("/v1/collections").json()["collections"]}
    assert listed["scratch-images"]["version"] == version  # the aborted job changed nothing


def test_bad_rows_of_a_text_file_are_failures_not_the_end_of_the_job(client: TestClient,
                                                                      service_data: ServiceData) -> None:
    lines = ['{"id": "a", "text": "a small dog", "label": "dog"}', '{"id": "b", "text": "   ", "label": "x"}',
             '{"id": "c", "text": "no label here"}', "not json at all", "[1, 2]",
             '{"id": "d", "text": "a tall tree", "label": "tree"}']
    (service_data.data_root / "mixed.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = wait_job(client, client.post("/v1/reindex", json={"collection": "scratch2", "source": "mixed.jsonl"})
                   .json()["job_id"])
    assert job["status"] == "succeeded" and job["num_items"] == 3, job  # "c": an unlabelled item is indexed
    assert job["progress"] | {"rate_items_per_s": 0} == {"done": 6, "total": 6, "failed": 3, "rate_items_per_s": 0}
    assert job["progress"]["rate_items_per_s"] > 0
    reasons = {f["id"]: f["reason"] for f in job["failures"]}
    assert set(reasons) == {"b", "line 4", "line 5"} and "empty text" in reasons["b"]


def test_a_write_that_meets_a_lock_rolls_back_and_the_store_stays_usable(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite", busy_timeout_s=0.2)
    store.create("j1", "texts", "a.jsonl")
    other = sqlite3.connect(tmp_path / "jobs.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(StorageBusyError, match="locked") as refused:
        store.add_failure("j1", "t1", "empty text")
    assert domain_status(refused.value) == (503, "storage_busy")
    assert retry_after_header(refused.value.retry_after_s) == {"Retry-After": "1"}
    with pytest.raises(StorageBusyError):
        store.create("j2", "texts", "b.jsonl", keep=10)
    other.execute("ROLLBACK")
    store.create("j3", "texts", "c.jsonl", keep=10)
    assert store.add_failure("j1", "t2", "empty text") == 1  # the first one left nothing behind
    seen = other.execute("SELECT job_id, failed FROM jobs ORDER BY job_id").fetchall()  # committed, not pending
    assert seen == [("j1", 1), ("j3", 0)]
    other.close()


def test_a_damaged_jobs_file_is_jobs_unavailable(tmp_path: Path) -> None:
    (tmp_path / "jobs.sqlite").write_bytes(b"not a database at all\n" * 100)
    with pytest.raises(JobsUnavailableError, match="jobs.sqlite") as refused:
        JobStore(tmp_path / "jobs.sqlite")
    assert domain_status(refused.value) == (503, "jobs_unavailable") and str(tmp_path) not in refused.value.message
