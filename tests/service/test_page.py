"""The search page is served by the app; thumbnails only ever read image files under the data root."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from arcsearch.service.app import create_app
from arcsearch.service.routers.page import image_file
from tests.service.demo_layout import index_like_the_demo
from tests.service.helpers import ServiceData, assert_error, local_client, service_settings, wait_ready


def test_page_is_served_without_a_build_step(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert 'id="results"' in response.text and "/search`" in response.text  # the collection search route
    assert "/v1/images/search" not in response.text and "/v1/texts/search" not in response.text  # not deprecated ones


def test_thumbnails_only_for_files_under_the_data_root(client: TestClient, tmp_path: Path) -> None:
    # the shared "images" collection was indexed from a folder outside this app's data root
    assert_error(client.get("/v1/collections/images/thumbnails/s1/1.pgm"), 404, "item_not_found")
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.pgm").write_bytes(b"P5")
    (tmp_path / "secret.pgm").write_bytes(b"P5")
    (root / "a" / "link.pgm").symlink_to(tmp_path / "secret.pgm")
    assert image_file(root, "a", "x.pgm") == (root / "a" / "x.pgm").resolve()
    assert image_file(root, str(root / "a"), "x.pgm") is not None
    for corpus, source in [("a", "link.pgm"), ("a", "../../secret.pgm"), ("..", "secret.pgm"), ("a", "inline"),
                           ("", "x.pgm"), ("a", "missing.pgm")]:
        assert image_file(root, corpus, source) is None, (corpus, source)


def test_a_corpus_indexed_like_the_demo_has_private_thumbnails(service_data: ServiceData, tmp_path: Path) -> None:
    demo = index_like_the_demo(tmp_path / "repo", embedder=service_data.image_embedder,
                               faces=service_data.faces_dir, people=["s1", "s2"], numbers=[1, 2])
    settings = service_settings(service_data, collections_dir=demo.collections_dir, data_root=demo.data_root)
    with contextlib.chdir(tmp_path), local_client(create_app(settings)) as app:  # served from another folder
        wait_ready(app)
        for item in ["s1/1.pgm", "s2/2.pgm"]:
            response = app.get(f"/v1/collections/images/thumbnails/{item}")
            assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text
            assert response.headers["cache-control"] == "private, max-age=300"  # it needs a key when auth is on
            assert Image.open(io.BytesIO(response.content)).size == (92, 112)  # fits 160 px; never enlarged


def test_an_older_index_with_a_corpus_relative_to_the_working_folder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    (root / "faces" / "s1").mkdir(parents=True)
    (root / "faces" / "s1" / "1.pgm").write_bytes(b"P5")
    (tmp_path / "faces" / "s1").mkdir(parents=True)
    (tmp_path / "faces" / "s1" / "2.pgm").write_bytes(b"P5")  # outside the data root
    monkeypatch.chdir(tmp_path)
    assert image_file(root, "data/faces", "s1/1.pgm") == (root / "faces" / "s1" / "1.pgm").resolve()
    assert image_file(root, "faces", "s1/1.pgm") == (root / "faces" / "s1" / "1.pgm").resolve()
    assert image_file(root, "faces", "s1/2.pgm") is None  # only under the data root, whichever folder it is


def post_preview(client: TestClient, name: str, data: bytes) -> object:
    return client.post("/v1/images/preview", files={"file": (name, data, "application/octet-stream")})


def test_a_preview_of_an_upload_browsers_cannot_show(client: TestClient, service_data: ServiceData,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    face = (service_data.faces_dir / "s1" / "1.pgm").read_bytes()
    response = post_preview(client, "1.pgm", face)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-store"
    preview = Image.open(io.BytesIO(response.content))
    assert preview.format == "PNG" and max(preview.size) <= 256 and preview.size[1] >= 112
    big = io.BytesIO()  # over the 1 MiB JSON limit, under the upload limit: the preview takes it
    Image.effect_noise((1100, 1100), 64).save(big, format="PPM")
    assert len(big.getvalue()) > 1024 * 1024 and post_preview(client, "big.pgm", big.getvalue()).status_code == 200
    error = assert_error(post_preview(client, "junk.pgm", b"P5 junk"), 415, "unsupported_media_type")
    assert error["details"]["filename"] == "junk.pgm"
    settings = client.app.state.settings  # type: ignore[attr-defined]
    monkeypatch.setattr(settings, "max_image_pixels", 10_000)
    assert_error(post_preview(client, "1.pgm", face), 413, "payload_too_large")
    monkeypatch.setattr(settings, "max_upload_bytes", 10_000)
    assert_error(post_preview(client, "1.pgm", face), 413, "payload_too_large")
