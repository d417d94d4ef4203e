"""Durability over HTTP on a real server: locked or full SQLite files, one server per folder, changes made
while a re-index runs, a corrupt jobs database, and no absolute path in what clients see."""

from __future__ import annotations

import base64
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from arcsearch.index.bundle import BundleError
from arcsearch.index.changes import ChangeLog
from arcsearch.index.collections import current_version, index_collection, read_collection
from arcsearch.index.items import ItemRecord
from arcsearch.service.app import create_app
from arcsearch.service.core.collection import load_collection
from tests import bundles
from tests.bundles import REPO
from tests.service.helpers import (
    SERVER_MODULE,
    ServiceData,
    assert_error,
    free_port,
    live_server,
    local_client,
    served_copy,
    server_environment,
    service_settings,
    wait_ready,
)
from tests.service.test_app import png_base64

BUSY_TIMEOUT_S = "0.5"
JUNK = base64.b64encode(b"GIF89a broken").decode()


@pytest.fixture(scope="module")
def template(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A collections folder (image: ``faces``, ``gallery``; text: ``notes``, ``notes2``) and a data root with
    an image folder holding one broken file; servers get copies of the folder."""
    root = tmp_path_factory.mktemp("durable")
    data = root / "data"
    for n in (1, 2):
        (data / "faces-bad" / "s1").mkdir(parents=True, exist_ok=True)
        shutil.copy(service_data.faces_dir / "s1" / f"{n}.pgm", data / "faces-bad" / "s1" / f"{n}.pgm")
    (data / "faces-bad" / "s1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    texts = bundles.write_jsonl(root / "src" / "notes.jsonl", [{**row, "id": f"old-{i}"} for i, row
                                                               in enumerate(service_data.indexed_texts[:20])])
    collections = root / "collections"
    for name, embedder, source in [("faces", service_data.image_embedder, data / "faces-bad"),
                                   ("gallery", service_data.image_embedder, data / "faces-bad"),
                                   ("notes", service_data.text_embedder, texts),
                                   ("notes2", service_data.text_embedder, texts)]:
        index_collection(collections, name, embedder, source, device="cpu", batch_size=32)
    return {"collections": collections, "data": data}


@pytest.fixture(scope="module")
def durable(template: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A live server on a copy of the template, with a short SQLite busy timeout."""
    out = tmp_path_factory.mktemp("durable-server")
    root = served_copy(template["collections"], out / "collections")
    with live_server(root, template["data"], out / "server.log", sqlite_busy_timeout_s=BUSY_TIMEOUT_S,
                     job_max_failures="1000", batch_size="2") as (url, proc), \
            httpx.Client(base_url=url, timeout=60) as http:
        yield {"http": http, "root": root, "pid": proc.pid, "log": out / "server.log", **template}


@contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """Hold the write lock of the SQLite file ``db`` from another connection (as another process would)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def finished(http: httpx.Client, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] in {"queued", "running"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def faces(service_data: ServiceData) -> list[dict[str, str]]:
    from PIL import Image

    return [{"id": f"ok-{n}", "image_base64": png_base64(Image.open(service_data.faces_dir / "s9" / f"{n}.pgm")),
             "label": "s9"} for n in (1, 2)]


def test_a_locked_jobs_database_answers_503_and_leaves_no_collection_busy(durable: dict[str, Any],
                                                                          service_data: ServiceData) -> None:
    http = durable["http"]
    items = [{"id": f"junk-{i}", "image_base64": JUNK} for i in range(400)] + faces(service_data)
    accepted = http.post("/v1/reindex", json={"collection": "faces", "items": items})
    assert accepted.status_code == 202, accepted.text
    with write_locked(durable["root"] / "jobs.sqlite"):
        time.sleep(3 * float(BUSY_TIMEOUT_S))  # the job's failure records meet the lock
        refused = http.post("/v1/reindex", json={"collection": "notes", "items": [{"id": "a", "text": "a cat"}]})
        assert_error(refused, 503, "storage_busy")
        assert refused.headers["retry-after"] == "1"
    job = finished(http, accepted.json()["job_id"])
    assert job["status"] in {"succeeded", "failed"}, job
    if job["status"] == "failed":
        assert "locked" in job["error"] and str(durable["root"]) not in job["error"], job

    again = http.post("/v1/reindex", json={"collection": "faces", "items": faces(service_data)})
    assert again.status_code == 202, again.text
    assert finished(http, again.json()["job_id"])["status"] == "succeeded"
    one = [{"id": "a", "text": "a cat", "label": "c"}]
    notes = http.post("/v1/reindex", json={"collection": "notes", "items": one})
    assert notes.status_code == 202, notes.text
    assert finished(http, notes.json()["job_id"])["status"] == "succeeded"
    assert http.delete("/v1/collections/faces").status_code == 204


def test_an_upsert_that_cannot_be_logged_answers_503_and_is_not_findable(durable: dict[str, Any]) -> None:
    http, base = durable["http"], "/v1/collections/notes2/items"
    with write_locked(durable["root"] / "notes2" / "changes.sqlite"):
        put = http.put(f"{base}/locked-1", json={"text": "a violet submarine", "label": "x"})
        assert_error(put, 503, "storage_busy")
        assert put.headers["retry-after"] == "1"
        assert_error(http.get(f"{base}/locked-1"), 404, "item_not_found")
        hits = http.post("/v1/collections/notes2/search", json={"text": "a violet submarine", "k": 50})
        assert "locked-1" not in {hit["id"] for hit in hits.json()["queries"][0]["hits"]}
        assert_error(http.delete(f"{base}/old-0"), 503, "storage_busy")
        assert http.get(f"{base}/old-0").status_code == 200
    assert http.put(f"{base}/locked-1", json={"text": "a violet submarine", "label": "x"}).json()["status"] == "created"
    assert http.get(f"{base}/locked-1").status_code == 200


def test_a_second_server_on_the_same_folder_refuses_to_start(durable: dict[str, Any]) -> None:
    env = server_environment(durable["root"], durable["data"], free_port())
    try:
        second = subprocess.run([sys.executable, "-m", SERVER_MODULE], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=90)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"a second server started on {durable['root']}: {exc.stderr!r}")
    output = second.stdout + second.stderr
    assert second.returncode != 0
    assert str(durable["root"].resolve()) in output and f"pid {durable['pid']}" in output, output[-2000:]
    assert durable["http"].get("/readyz").status_code == 200  # the first one is unharmed


def test_changes_accepted_during_a_reindex_are_kept_on_the_new_version(durable: dict[str, Any],
                                                                        service_data: ServiceData,
                                                                        tmp_path: Path) -> None:
    http, base = durable["http"], "/v1/collections/notes/items"
    assert http.put(f"{base}/before", json={"text": "made before the re-index", "label": "x"}).status_code == 200
    rows = service_data.indexed_texts
    items = [{"id": f"new-{i}", "text": rows[i % len(rows)]["text"], "label": "n"} for i in range(160)]
    job_id = http.post("/v1/reindex", json={"collection": "notes", "items": items}).json()["job_id"]
    during: list[str] = []
    while http.get(f"/v1/jobs/{job_id}").json()["status"] in {"queued", "running"}:
        put = http.put(f"{base}/during-{len(during)}", json={"text": f"a change number {len(during)}", "label": "d"})
        assert put.status_code == 200, put.text
        during.append(f"during-{len(during)}")
        if len(during) == 2:
            assert http.delete(f"{base}/during-0").status_code == 200
    job = finished(http, job_id)
    assert job["status"] == "succeeded" and len(during) >= 3, (job, during)

    def check(client: httpx.Client) -> None:
        assert_error(client.get(f"{base}/before"), 404, "item_not_found")  # the re-index replaced it
        assert_error(client.get(f"{base}/during-0"), 404, "item_not_found")
        assert all(client.get(f"{base}/{item}").status_code == 200 for item in during[1:])
        listed = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}
        assert (listed["notes"]["version"], listed["notes"]["size"]) == (job["version"], 160 + len(during) - 1)

    check(http)
    copy = served_copy(durable["root"], tmp_path / "collections")  # a restart replays them from the change log
    with live_server(copy, durable["data"], tmp_path / "server.log") as (url, _), \
            httpx.Client(base_url=url, timeout=60) as restarted:
        check(restarted)


def test_clients_see_paths_relative_to_the_roots(durable: dict[str, Any]) -> None:
    http = durable["http"]
    job = finished(http, http.post("/v1/reindex", json={"collection": "gallery", "source": "faces-bad"})
                   .json()["job_id"])
    assert job["status"] == "succeeded" and [f["id"] for f in job["failures"]] == ["s1/broken.png"], job
    reason = job["failures"][0]["reason"]
    assert "faces-bad/s1/broken.png" in reason and str(durable["data"]) not in reason, reason
    listed = {c["name"]: c for c in http.get("/v1/collections").json()["collections"]}
    assert listed["gallery"]["embedder_origin"] == "image-embedder"  # outside both roots: its folder name only


def test_a_corrupt_jobs_database_leaves_search_up_and_says_why(template: dict[str, Path], tmp_path: Path) -> None:
    root = served_copy(template["collections"], tmp_path / "collections")
    (root / "jobs.sqlite").write_bytes(b"this is not a database\n" * 200)
    with live_server(root, template["data"], tmp_path / "server.log", ready_path="/healthz") as (url, _), \
            httpx.Client(base_url=url, timeout=60) as http:
        deadline = time.monotonic() + 120
        while "*jobs" not in ((ready := http.get("/readyz")).json()["error"]["details"] or {}):
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.2)
        problem = assert_error(ready, 503, "not_ready")["details"]
        assert set(problem) == {"*jobs"} and "jobs.sqlite" in problem["*jobs"], problem
        assert str(tmp_path) not in ready.text
        listed = http.get("/v1/collections")
        assert listed.status_code == 200, listed.text
        notes = {c["name"]: c for c in listed.json()["collections"]}["notes"]
        assert (notes["status"], notes["last_reindex"], notes["embedder_origin"]) == ("ready", None, "text-embedder")
        metrics = http.get("/metrics")
        assert metrics.status_code == 200 and 'arcsearch_index_items{collection="notes"} 20.0' in metrics.text
        hits = http.post("/v1/collections/notes/search", json={"text": "an animal", "k": 3})
        assert hits.status_code == 200 and len(hits.json()["queries"][0]["hits"]) == 3, hits.text
        assert_error(http.post("/v1/reindex", json={"collection": "notes", "items": [{"id": "a", "text": "a"}]}),
                     503, "jobs_unavailable")
        assert_error(http.get("/v1/jobs/0123456789abcdef"), 503, "jobs_unavailable")


class FullChangeLog(ChangeLog):
    """A real change log that cannot grow: SQLite's page limit set to its current size (a full disk)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        (pages,) = self._conn.execute("PRAGMA page_count").fetchone()
        self._conn.execute(f"PRAGMA max_page_count = {int(pages)}")


def test_an_upsert_on_a_full_disk_answers_507_and_is_not_findable(template: dict[str, Path],
                                                                   service_data: ServiceData,
                                                                   tmp_path: Path) -> None:
    root = served_copy(template["collections"], tmp_path / "collections")
    with local_client(create_app(service_settings(service_data, collections_dir=root,
                                                  data_root=template["data"]))) as client:
        wait_ready(client)
        notes = client.app.state.registry.get("notes")  # type: ignore[attr-defined]
        notes.changes.close()
        notes.changes = FullChangeLog(root / "notes" / "changes.sqlite")
        body = {"text": "a long note", "label": "x", "metadata": {"notes": "many words " * 2000}}  # > one page
        assert_error(client.put("/v1/collections/notes/items/big", json=body), 507, "insufficient_storage")
        assert_error(client.get("/v1/collections/notes/items/big"), 404, "item_not_found")
        assert len(client.post("/v1/collections/notes/search", json={"text": "a", "k": 50})
                   .json()["queries"][0]["hits"]) == 20


def test_a_publish_that_fails_keeps_the_old_version_and_every_change(template: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    root = served_copy(template["collections"], tmp_path / "collections")
    info, embedders = read_collection(root, "notes"), {}
    notes = load_collection(root, info, device="cpu", embedders=embedders)
    old = notes.snapshot.version
    mark = notes.change_mark()
    notes.upsert(ItemRecord("kept", "x"), notes.embedder.embed_texts(["kept while a re-index ran"])[0])
    half_written = root / "notes" / "staging" / "half"
    half_written.mkdir()
    with pytest.raises(BundleError):
        notes.publish(root, half_written, since=mark)
    assert current_version(root, "notes") == old and notes.snapshot.version == old
    assert notes.live_store()[0].get("kept") is not None
    restarted = load_collection(root, info, device="cpu", embedders=embedders)
    assert restarted.snapshot.version == old and restarted.live_store()[0].get("kept") is not None
