"""The app in-process (TestClient): readiness, last-resort errors, re-index from paths and inline images."""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from arcsearch.service.app import create_app
from tests.service.helpers import ServiceData, assert_error, local_client, service_settings, wait_job


def png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_not_ready_until_the_lifespan_has_loaded_collections(service_data: ServiceData) -> None:
    client = local_client(create_app(service_settings(service_data)))  # no `with`: lifespan never runs
    assert client.get("/healthz").status_code == 200
    assert_error(client.get("/readyz"), 503, "not_ready")
    assert_error(client.post("/v1/collections/texts/search", json={"text": "a dog"}), 503, "not_ready")


def test_unexpected_errors_get_the_shape_and_are_logged(service_data: ServiceData,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(service_settings(service_data))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    with caplog.at_level(logging.ERROR, logger="arcsearch.service.errors"):
        response = local_client(app, raise_server_exceptions=False).get("/boom")
    error = assert_error(response, 500, "internal_error")
    assert "kaboom" not in error["message"]
    assert "kaboom" in caplog.text


def test_openapi_documents_every_route_with_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    expected = {("/v1/images/search", "post", "200"), ("/v1/texts/search", "post", "200"),
                ("/v1/reindex", "post", "202"), ("/v1/jobs/{job_id}", "get", "200"),
                ("/v1/collections", "get", "200"), ("/healthz", "get", "200"), ("/readyz", "get", "200"),
                ("/v1/collections/{name}/items/{item_id}", "get", "200"),
                ("/v1/collections/{name}/items/{item_id}", "put", "200"),
                ("/v1/collections/{name}/items/{item_id}", "delete", "200"),
                ("/v1/collections/{name}/search", "post", "200")}
    for path, method, status in expected:
        response = spec["paths"][path][method]["responses"]
        assert "$ref" in str(response[status]["content"]["application/json"]["schema"]), (path, status)
    for path in ("/v1/collections/{name}/search", "/v1/texts/search"):
        assert "ErrorResponse" in str(spec["paths"][path]["post"]["responses"]["422"])
    assert client.get("/docs").status_code == 200


def test_reindex_from_a_file_under_the_data_root(client: TestClient) -> None:
    accepted = client.post("/v1/reindex", json={"collection": "scratch2", "source": "more/texts.jsonl"})
    assert accepted.status_code == 202 and accepted.json()["status"] in {"queued", "running"}
    job = wait_job(client, accepted.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["progress"].pop("rate_items_per_s") > 0
    assert (job["num_items"], job["skipped"], job["progress"]) == (30, 0, {"done": 30, "total": 30, "failed": 0,
                                                                            "resumed": 0, "eta_s": None})
    body = client.post("/v1/collections/scratch2/search", json={"text": "anything", "k": 50}).json()
    assert body["version"] == job["version"]
    hits = body["queries"][0]["hits"]
    assert len(hits) == 30 and all(hit["id"].startswith("more-") for hit in hits)


def test_reindex_images_inline_skips_unreadable_ones(client: TestClient, service_data: ServiceData) -> None:
    faces = [Image.open(service_data.faces_dir / "s7" / f"{n}.pgm") for n in (1, 2, 3)]
    items = [{"id": f"face-{i}", "image_base64": png_base64(face), "label": "s7", "metadata": {"n": i}}
             for i, face in enumerate(faces)]
    items.append({"id": "junk", "image_base64": base64.b64encode(b"not an image").decode(), "label": "x"})
    job = wait_job(client, client.post("/v1/reindex", json={"collection": "scratch-images", "items": items})
                   .json()["job_id"])
    assert job["status"] == "succeeded", job
    assert (job["num_items"], job["skipped"]) == (3, 1)
    buffer = io.BytesIO()
    faces[1].save(buffer, format="PNG")
    response = client.post("/v1/collections/scratch-images/search",
                           files={"file": ("q.png", buffer.getvalue(), "image/png")}, data={"k": "3"})
    hits = response.json()["queries"][0]["hits"]
    assert [hit["id"] for hit in hits][0] == "face-1" and hits[0]["metadata"] == {"n": 1}
    assert hits[0]["source"] == "inline"


def test_reindex_image_folder_ignores_files_leading_outside_the_root(client: TestClient) -> None:
    job = wait_job(client, client.post("/v1/reindex", json={"collection": "scratch-images",
                                                            "source": "faces-small"}).json()["job_id"])
    assert job["status"] == "succeeded", job
    listed = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}
    assert listed["scratch-images"]["size"] == 6  # s1/*, s2/*, without the symlink s2/outside.pgm


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"collection": "scratch-images", "items": [{"id": "a", "text": "a dog"}]}, 400, "wrong_modality"),
    ({"collection": "scratch2", "items": [{"id": "a", "image_base64": "aGk="}]}, 400, "wrong_modality"),
    ({"collection": "scratch-images", "items": [{"id": "a", "image_base64": "%%%"}]}, 422, "validation_error"),
    ({"collection": "scratch2", "items": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, 422,
     "validation_error"),
    ({"collection": "scratch2", "items": [{"id": "a", "text": "x", "image_base64": "aGk="}]}, 422,
     "validation_error"),
    ({"collection": "scratch2", "items": []}, 422, "validation_error"),
    ({"collection": "scratch2", "source": "faces-small"}, 400, "invalid_source"),
    ({"collection": "scratch-images", "source": "texts.jsonl"}, 400, "invalid_source"),
    ({"collection": "Bad Name", "source": "texts.jsonl"}, 422, "validation_error"),
])
def test_bad_reindex_requests(client: TestClient, body: dict[str, Any], status: int, code: str) -> None:
    assert_error(client.post("/v1/reindex", json=body), status, code)


def test_failed_job_reports_its_error_and_keeps_the_old_index(client: TestClient, service_data: ServiceData
                                                              ) -> None:
    (service_data.data_root / "broken.jsonl").write_text('{"text": "  ", "label": "x"}\n', encoding="utf-8")
    before = client.post("/v1/collections/scratch2/search", json={"text": "x"}).json()["version"]
    job = wait_job(client, client.post("/v1/reindex", json={"collection": "scratch2", "source": "broken.jsonl"})
                   .json()["job_id"])
    assert job["status"] == "failed" and "no readable item" in job["error"], job
    assert job["failures"] == [{"id": "1", "reason": "empty text: 'text' must be a non-empty string"}]
    after = client.post("/v1/collections/scratch2/search", json={"text": "x"}).json()["version"]
    assert after == before
