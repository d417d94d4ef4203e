"""Stateless replicas: two server processes (ARCSEARCH_INDEX_BACKEND=milvus) on one collections folder and one
real Milvus server serve the same collections: what one creates, upserts or deletes, the other finds at once.
Also: a Milvus server is never taken from a request, and without ARCSEARCH_MILVUS_URI a Milvus collection is a
clear 503."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from arcsearch.index.collections import index_collection
from arcsearch.index.serving_lock import FolderInUseError
from arcsearch.service.app import create_app
from tests.service.helpers import ServiceData, assert_error, live_server, local_client, service_settings, wait_ready

EMBEDDER = "embedders/text"


def search_ids(url: str, name: str, text: str) -> list[str]:
    response = httpx.post(f"{url}/v1/collections/{name}/search", json={"text": text, "k": 3}, timeout=30)
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["queries"][0]["hits"]]


def test_two_replicas_serve_one_collection(service_data: ServiceData, tmp_path: Path, milvus_uri: str) -> None:
    data, root = tmp_path / "data", tmp_path / "collections"
    shutil.copytree(service_data.text_embedder, data / EMBEDDER)
    env = {"index_backend": "milvus", "milvus_uri": milvus_uri}
    with live_server(root, data, tmp_path / "a.log", **env) as (a, _), \
            live_server(root, data, tmp_path / "b.log", **env) as (b, _):
        created = httpx.post(f"{a}/v1/collections", json={"name": "shared", "embedder": EMBEDDER}, timeout=60)
        assert created.status_code == 201, created.text
        assert "shared" in {c["name"] for c in httpx.get(f"{b}/v1/collections", timeout=60).json()["collections"]}
        put = httpx.put(f"{a}/v1/collections/shared/items/cat",
                        json={"text": "a small striped cat", "label": "cat"}, timeout=30)
        assert put.status_code == 200, put.text
        assert search_ids(b, "shared", "a small striped cat") == ["cat"]  # written by A, found by B at once
        assert httpx.get(f"{b}/v1/collections/shared/items/cat", timeout=30).json()["label"] == "cat"
        httpx.put(f"{b}/v1/collections/shared/items/dog", json={"text": "a big dog", "label": "dog"}, timeout=30)
        assert httpx.delete(f"{b}/v1/collections/shared/items/cat", timeout=30).status_code == 200
        assert search_ids(a, "shared", "a small striped cat") == ["dog"]
        assert httpx.delete(f"{b}/v1/collections/shared", timeout=60).status_code == 204
        assert_error(httpx.get(f"{a}/v1/collections/shared/items/dog", timeout=30), 404, "collection_not_found")


def test_replicas_share_the_folder_a_faiss_server_owns_it(tmp_path: Path) -> None:
    probe = ("import sys; from pathlib import Path; from arcsearch.index.serving_lock import serving_lock\n"
             "with serving_lock(Path(sys.argv[1]), shared=sys.argv[2] == 'shared'): print('held')")
    holder = subprocess.Popen([sys.executable, "-c", probe + "; import time; time.sleep(60)", str(tmp_path),
                               "shared"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        shared = subprocess.run([sys.executable, "-c", probe, str(tmp_path), "shared"], capture_output=True,
                                text=True, timeout=60)
        assert shared.stdout.strip() == "held", shared.stderr
        exclusive = subprocess.run([sys.executable, "-c", probe, str(tmp_path), "exclusive"], capture_output=True,
                                   text=True, timeout=60)
        assert exclusive.returncode != 0 and FolderInUseError.__name__ in exclusive.stderr
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture()
def plain(service_data: ServiceData, tmp_path: Path) -> Iterator[TestClient]:
    shutil.copytree(service_data.text_embedder, tmp_path / "data" / EMBEDDER)
    settings = service_settings(service_data, collections_dir=tmp_path / "collections", data_root=tmp_path / "data")
    with local_client(create_app(settings)) as client:
        wait_ready(client)
        yield client


def test_a_milvus_uri_is_never_taken_from_a_request(plain: TestClient, tmp_path: Path) -> None:
    for field in ("milvus_uri", "uri", "milvus_token"):
        body = {"name": "x", "embedder": EMBEDDER, "backend": "milvus", field: "http://10.1.2.3:19530"}
        assert_error(plain.post("/v1/collections", json=body), 422, "validation_error")
    refused = assert_error(plain.post("/v1/collections", json={"name": "x", "embedder": EMBEDDER,
                                                               "backend": "milvus"}), 503, "backend_unavailable")
    assert "ARCSEARCH_MILVUS_URI" in refused["message"]
    assert not (tmp_path / "collections" / "x").exists()
    assert_error(plain.post("/v1/collections", json={"name": "x", "embedder": EMBEDDER, "backend": "qdrant"}),
                 422, "validation_error")


def test_a_shared_folder_process_serves_no_faiss_collection(service_data: ServiceData, tmp_path: Path) -> None:
    root = tmp_path / "collections"
    index_collection(root, "faissy", service_data.text_embedder, service_data.data_root / "scratch.jsonl",
                     device="cpu", batch_size=32)
    shutil.copytree(service_data.text_embedder, tmp_path / "data" / EMBEDDER)
    settings = service_settings(service_data, collections_dir=root, data_root=tmp_path / "data",
                                index_backend="milvus")
    with local_client(create_app(settings)) as client:
        wait_ready(client)
        listed = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}
        assert listed["faissy"]["status"] == "error" and "one process" in listed["faissy"]["error"]
        assert_error(client.post("/v1/collections/faissy/search", json={"text": "a"}), 503, "collection_unavailable")
        assert_error(client.post("/v1/collections", json={"name": "y", "embedder": EMBEDDER, "backend": "faiss"}),
                     409, "backend_refused")
        assert_error(client.post("/v1/collections", json={"name": "y", "embedder": EMBEDDER}), 503,
                     "backend_unavailable")  # milvus by default here, and no ARCSEARCH_MILVUS_URI
        assert not (root / "y").exists()


def test_a_failing_milvus_is_a_503_not_a_500(service_data: ServiceData, tmp_path: Path, milvus_uri: str) -> None:
    shutil.copytree(service_data.text_embedder, tmp_path / "data" / EMBEDDER)
    settings = service_settings(service_data, collections_dir=tmp_path / "collections", data_root=tmp_path / "data",
                                index_backend="milvus", milvus_uri=milvus_uri)
    with local_client(create_app(settings)) as client:
        wait_ready(client)
        assert client.post("/v1/collections", json={"name": "lost", "embedder": EMBEDDER}).status_code == 201
        store = client.app.state.registry.collections["lost"].store  # type: ignore[attr-defined]
        store.drop()  # as if Milvus lost it: every call on it now fails inside pymilvus
        failed = assert_error(client.post("/v1/collections/lost/search", json={"text": "a"}), 503,
                              "backend_unavailable")
        assert failed["message"].startswith("the vector store failed")
        assert client.delete("/v1/collections/lost").status_code == 204
