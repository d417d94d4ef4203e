"""Creating, listing and deleting collections through HTTP, on an app with its own collections folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from arcsearch.service.app import create_app
from tests import bundles
from tests.service.helpers import ServiceData, assert_error, local_client, service_settings, wait_job, wait_ready

EMBEDDER = "embedders/text"


@pytest.fixture(scope="module")
def admin_data(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(collections dir, data root): no collections yet; the data root holds a text embedder and a corpus."""
    root = tmp_path_factory.mktemp("admin")
    data_root = root / "data"
    shutil.copytree(service_data.text_embedder, data_root / EMBEDDER)
    shutil.copy(service_data.data_root / "texts.jsonl", data_root / "texts.jsonl")
    bundles.fake_embedder_bundle(data_root / "embedders" / "broken")  # a valid manifest, weights that do not load
    (data_root / "not-a-bundle").mkdir()
    return root / "collections", data_root


@pytest.fixture(scope="module")
def admin(service_data: ServiceData, admin_data: tuple[Path, Path]) -> Iterator[TestClient]:
    collections_dir, data_root = admin_data
    settings = service_settings(service_data, collections_dir=collections_dir, data_root=data_root)
    with local_client(create_app(settings)) as client:
        wait_ready(client)
        yield client


def listed(client: TestClient) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}


def search(client: TestClient, collection: str, text: str = "a dog", k: int = 5) -> Any:
    return client.post(f"/v1/collections/{collection}/search", json={"text": text, "k": k})


def test_created_collection_is_served_empty_then_filled_by_upserts_and_reindex(
        admin: TestClient, admin_data: tuple[Path, Path]) -> None:
    created = admin.post("/v1/collections", json={"name": "notes", "embedder": EMBEDDER})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/collections/notes"
    body = created.json()
    assert (body["status"], body["size"], body["dim"], body["index_type"]) == ("ready", 0, 384, "Flat")
    assert body["embedder_origin"] == EMBEDDER  # relative to the data root, never absolute
    assert listed(admin)["notes"]["last_reindex"] is None

    empty = search(admin, "notes")
    assert empty.status_code == 200 and empty.json()["queries"][0]["hits"] == [], empty.text
    put = admin.put("/v1/collections/notes/items/n1", json={"text": "a small dog barked", "label": "dog"})
    assert put.status_code == 200 and put.json()["size"] == 1, put.text
    assert [hit["id"] for hit in search(admin, "notes").json()["queries"][0]["hits"]] == ["n1"]

    job = wait_job(admin, admin.post("/v1/reindex", json={"collection": "notes", "source": "texts.jsonl"})
                   .json()["job_id"])
    assert job["status"] == "succeeded", job
    summary = listed(admin)["notes"]
    assert (summary["size"], summary["index_type"], summary["version"]) == (100, "Flat", job["version"])
    assert summary["last_reindex"] == {"job_id": job["job_id"], "status": "succeeded",
                                       "finished_at": job["finished_at"], "num_items": 100}

    folder = admin_data[0] / "notes"
    assert (folder / "collection.json").is_file()
    assert admin.delete("/v1/collections/notes").status_code == 204
    assert not folder.exists() and not list(admin_data[0].glob(".deleted-*"))
    assert "notes" not in listed(admin)
    assert_error(search(admin, "notes"), 404, "collection_not_found")
    assert_error(admin.delete("/v1/collections/notes"), 404, "collection_not_found")

    again = admin.post("/v1/collections", json={"name": "notes", "embedder": EMBEDDER, "index_factory": "HNSW16"})
    assert again.status_code == 201, again.text
    assert (again.json()["size"], again.json()["index_type"]) == (0, "HNSW16")
    assert listed(admin)["notes"]["last_reindex"] is None  # the old collection's jobs went with it
    assert admin.delete("/v1/collections/notes").status_code == 204


def test_a_factory_that_needs_training_waits_for_the_first_reindex(admin: TestClient) -> None:
    created = admin.post("/v1/collections", json={"name": "ivf", "embedder": EMBEDDER, "index_factory": "IVF4,Flat"})
    assert created.status_code == 201, created.text
    assert (created.json()["status"], created.json()["index_type"]) == ("empty", "IVF4,Flat")
    assert search(admin, "ivf").json()["queries"][0]["hits"] == []
    assert_error(admin.put("/v1/collections/ivf/items/a", json={"text": "a cat"}), 409, "collection_empty")
    job = wait_job(admin, admin.post("/v1/reindex", json={"collection": "ivf", "source": "texts.jsonl"})
                   .json()["job_id"])
    assert job["status"] == "succeeded", job
    summary = listed(admin)["ivf"]
    assert (summary["status"], summary["size"], summary["index_type"]) == ("ready", 100, "IVF4,Flat")
    assert len(search(admin, "ivf", k=3).json()["queries"][0]["hits"]) == 3
    assert admin.delete("/v1/collections/ivf").status_code == 204


def test_delete_waits_for_a_running_reindex(admin: TestClient, service_data: ServiceData) -> None:
    assert admin.post("/v1/collections", json={"name": "busy", "embedder": EMBEDDER}).status_code == 201
    items = [{"id": f"b{i}", "text": row["text"], "label": row["label"]}
             for i, row in enumerate(service_data.indexed_texts)]
    job_id = admin.post("/v1/reindex", json={"collection": "busy", "items": items}).json()["job_id"]
    refused = assert_error(admin.delete("/v1/collections/busy"), 409, "job_conflict")
    assert refused["details"] == {"job_id": job_id}
    assert wait_job(admin, job_id)["status"] == "succeeded"
    assert admin.delete("/v1/collections/busy").status_code == 204


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"name": "Bad Name", "embedder": EMBEDDER}, 422, "validation_error"),
    ({"name": "x", "embedder": EMBEDDER, "extra": 1}, 422, "validation_error"),
    ({"name": "x"}, 422, "validation_error"),
    ({"name": "x", "embedder": "https://example.com/model"}, 400, "invalid_source"),
    ({"name": "x", "embedder": "../outside"}, 403, "source_outside_data_root"),
    ({"name": "x", "embedder": "/etc"}, 403, "source_outside_data_root"),
    ({"name": "x", "embedder": "no/such/folder"}, 400, "invalid_source"),
    ({"name": "x", "embedder": "texts.jsonl"}, 400, "invalid_source"),
    ({"name": "x", "embedder": "not-a-bundle"}, 400, "invalid_embedder"),
    ({"name": "x", "embedder": "embedders/broken"}, 400, "invalid_embedder"),
    ({"name": "x", "embedder": EMBEDDER, "index_factory": "NoSuchIndex"}, 422, "invalid_index_factory"),
    ({"name": "x", "embedder": EMBEDDER, "index_factory": "IVF99999999,Flat"}, 422, "invalid_index_factory"),
    ({"name": "x", "embedder": EMBEDDER, "index_factory": "Flat; rm -rf /"}, 422, "invalid_index_factory"),
])
def test_bad_create_requests(admin: TestClient, admin_data: tuple[Path, Path], body: dict[str, Any], status: int,
                             code: str) -> None:
    assert_error(admin.post("/v1/collections", json=body), status, code)
    assert not (admin_data[0] / "x").exists()
    assert "x" not in listed(admin)


def test_an_existing_name_is_a_conflict(admin: TestClient) -> None:
    assert admin.post("/v1/collections", json={"name": "taken", "embedder": EMBEDDER}).status_code == 201
    assert_error(admin.post("/v1/collections", json={"name": "taken", "embedder": EMBEDDER}), 409,
                 "collection_exists")
    assert admin.delete("/v1/collections/taken").status_code == 204


def test_creating_and_deleting_need_an_admin_key(admin: TestClient) -> None:
    state = admin.app.state  # type: ignore[attr-defined]
    plain = state.settings
    state.settings = plain.model_copy(update={"read_keys": SecretStr("reader-key-0123456789"),
                                              "admin_keys": SecretStr("boss-key-0123456789")})
    try:
        body = {"name": "keyed", "embedder": EMBEDDER}
        reader = {"Authorization": "Bearer reader-key-0123456789"}
        assert_error(admin.post("/v1/collections", json=body), 401, "unauthorized")
        assert_error(admin.post("/v1/collections", json=body, headers=reader), 403, "forbidden")
        assert admin.get("/v1/collections", headers=reader).status_code == 200
        boss = {"Authorization": "Bearer boss-key-0123456789"}
        assert admin.post("/v1/collections", json=body, headers=boss).status_code == 201
        assert_error(admin.delete("/v1/collections/keyed", headers=reader), 403, "forbidden")
        assert admin.delete("/v1/collections/keyed", headers=boss).status_code == 204
    finally:
        state.settings = plain
