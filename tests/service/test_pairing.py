"""The service refuses an index built with another embedder, and keeps serving the other collections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from arcsearch.index.collections import current_index_dir, index_collection, read_collection
from arcsearch.service.app import create_app
from arcsearch.service.core.collection import load_collection
from tests.service.helpers import ServiceData, assert_error, local_client, service_settings, wait_ready


@pytest.fixture(scope="module")
def mismatched(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> ServiceData:
    """Collections ``good`` and ``bad``; ``bad``'s live index names an embedder hash it was not built with."""
    tmp_path = tmp_path_factory.mktemp("pairing")
    root, faces = tmp_path / "collections", tmp_path / "faces"
    for person in ("s1", "s2"):
        shutil.copytree(service_data.faces_dir / person, faces / person)
    for name in ("good", "bad"):
        index_collection(root, name, service_data.image_embedder, faces, device="cpu")
    manifest_path = current_index_dir(root, "bad") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["embedder_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    return ServiceData(root, service_data.data_root, service_data.faces_dir, [], [], service_data.image_embedder,
                       service_data.text_embedder)


def test_load_collection_raises_a_clear_error(mismatched: ServiceData) -> None:
    from arcsearch.index.pairing import EmbedderMismatchError

    info = read_collection(mismatched.collections_dir, "bad")
    with pytest.raises(EmbedderMismatchError, match="built with embedder 000000000000"):
        load_collection(mismatched.collections_dir, info, device="cpu")


def test_service_serves_the_good_collection_and_reports_the_bad_one(mismatched: ServiceData) -> None:
    with local_client(create_app(service_settings(mismatched))) as client:
        wait_ready(client)
        error = assert_error(client.get("/readyz"), 503, "not_ready")
        assert "built with embedder" in error["details"]["bad"]
        listed = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}
        assert listed["bad"]["status"] == "error" and "built with embedder" in listed["bad"]["error"]
        assert listed["good"]["status"] == "ready" and listed["good"]["size"] == 20
        face = (mismatched.faces_dir / "s1" / "1.pgm").read_bytes()
        bad = client.post("/v1/collections/bad/search", files={"file": ("1.pgm", face)})
        assert_error(bad, 503, "collection_unavailable")
        good = client.post("/v1/collections/good/search", files={"file": ("1.pgm", face)})
        assert good.status_code == 200 and good.json()["queries"][0]["hits"][0]["id"] == "s1/1.pgm"


def test_tampered_embedder_weights_are_refused(mismatched: ServiceData, tmp_path: Path) -> None:
    from arcsearch.index.pairing import EmbedderMismatchError

    root = shutil.copytree(mismatched.collections_dir, tmp_path / "collections")
    weights = root / "good" / "embedder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(EmbedderMismatchError, match="do not match their manifest hash"):
        load_collection(root, read_collection(root, "good"), device="cpu")
