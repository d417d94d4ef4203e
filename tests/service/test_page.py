"""The search page is served by the app; thumbnails only ever read image files under the data root."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.routers.page import image_file
from tests.service.helpers import assert_error


def test_page_is_served_without_a_build_step(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert 'id="results"' in response.text and "/v1/images/search" in response.text


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
