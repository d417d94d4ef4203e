"""POST /v1/collections against a real server: hostile embedder bundles and costly factories are refused.

An admin registers an embedder folder under the data root. A folder holding a link to the server's
environment, a format-1 image bundle whose ``model.pt2`` carries a pickle payload, a text model with a
custom module, or a factory like HNSW65536 is refused with a 4xx; nothing runs, nothing is copied.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arcsearch.index.bundle import read_embedder_manifest, sha256_of_path, write_manifest
from tests import bundles
from tests.index.crafted import legacy_image_bundle
from tests.service.helpers import ServiceData, assert_error, live_server

ADMIN = "admin-key-for-safety-tests"


@pytest.fixture(scope="module")
def hostile(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A data root with hostile embedder folders, an empty collections folder and a marker path."""
    root = tmp_path_factory.mktemp("hostile")
    embedders = root / "data" / "embedders"
    marker = root / "payload-ran"
    leaky = shutil.copytree(service_data.text_embedder, embedders / "leaky")
    (leaky / "leak").symlink_to("/proc/self/environ")
    legacy_image_bundle(embedders / "legacy", marker)
    custom = shutil.copytree(service_data.text_embedder, embedders / "custom")
    modules = custom / "model" / "modules.json"
    modules.write_text(modules.read_text().replace("sentence_transformers.", "my_plugin.", 1))
    manifest = read_embedder_manifest(custom)  # the hash is no signature: whoever alters a bundle rewrites it
    write_manifest(custom, manifest.model_copy(update={"weights_sha256": sha256_of_path(custom / "model")}))
    shutil.copytree(service_data.image_embedder, embedders / "image")
    return {"data": root / "data", "collections": root / "collections", "marker": marker, "log": root / "log"}


@pytest.fixture(scope="module")
def admin_http(hostile: dict[str, Path]) -> Iterator[httpx.Client]:
    with live_server(hostile["collections"], hostile["data"], hostile["log"], admin_keys=ADMIN) as (url, _proc), \
            httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield client


def create(client: httpx.Client, name: str, embedder: str, factory: str | None = None) -> Any:
    body = {"name": name, "embedder": f"embedders/{embedder}"} | ({"index_factory": factory} if factory else {})
    return client.post("/v1/collections", json=body)


@pytest.mark.parametrize(("name", "embedder", "message"), [
    ("leaky", "leaky", "leak is a symbolic link"),
    ("legacy", "legacy", "re-export"),
    ("custom", "custom", "is not a sentence_transformers class"),
])
def test_hostile_embedder_folders_are_refused(admin_http: httpx.Client, hostile: dict[str, Path], name: str,
                                              embedder: str, message: str) -> None:
    error = assert_error(create(admin_http, name, embedder), 400, "invalid_embedder")
    assert message in error["message"]
    assert not (hostile["collections"] / name).exists()
    assert name not in {c["name"] for c in admin_http.get("/v1/collections").json()["collections"]}
    assert not hostile["marker"].exists()


def test_nothing_of_the_environment_reaches_the_collections(admin_http: httpx.Client,
                                                            hostile: dict[str, Path]) -> None:
    create(admin_http, "leaky2", "leaky")
    copied = [p for p in hostile["collections"].rglob("*") if p.name == "leak"] \
        if hostile["collections"].exists() else []
    assert copied == []


def test_a_factory_costing_half_a_megabyte_per_vector_is_refused(admin_http: httpx.Client) -> None:
    error = assert_error(create(admin_http, "graph", "image", "HNSW65536"), 422, "invalid_index_factory")
    assert "bytes per vector" in error["message"] and "bound of" in error["message"]


def test_a_safe_image_bundle_is_served(admin_http: httpx.Client) -> None:
    created = create(admin_http, "faces", "image", "HNSW32")
    assert created.status_code == 201, created.text
    face = (bundles.prepared().faces_dir / "s1" / "1.pgm").read_bytes()
    put = admin_http.put("/v1/collections/faces/items/s1/1", json={"image_base64": base64.b64encode(face).decode()})
    assert put.status_code == 200, put.text
    hits = admin_http.post("/v1/collections/faces/search", files={"file": ("1.pgm", face)})
    assert hits.status_code == 200 and hits.json()["queries"][0]["hits"][0]["id"] == "s1/1"
