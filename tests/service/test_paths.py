"""Paths as clients see them: relative to the data root or the collections folder, else the last part only."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcsearch.service.core.paths import display_path, root_forms, scrub_paths


@pytest.fixture()
def roots(tmp_path: Path) -> list:
    (tmp_path / "data").mkdir()
    (tmp_path / "collections").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data", target_is_directory=True)
    return root_forms([tmp_path / "link", tmp_path / "collections"])


@pytest.mark.parametrize(("path", "shown"), [
    ("{tmp}/data/embedders/text", "embedders/text"),  # below a root's real path
    ("{tmp}/link/faces/s1/1.pgm", "faces/s1/1.pgm"),  # below the root as configured (a symlink)
    ("{tmp}/collections/notes/embedder", "notes/embedder"),
    ("{tmp}/collections", "collections"),  # a root itself: its folder name
    ("/opt/bundles/text-embedder", "text-embedder"),  # outside both roots: its last part only
    ("embedders/text", "embedders/text"),  # relative: as it is
    ("", ""),
])
def test_display_path(roots: list, tmp_path: Path, path: str, shown: str) -> None:
    assert display_path(path.format(tmp=tmp_path), roots) == shown


def test_scrub_paths_in_messages(roots: list, tmp_path: Path) -> None:
    message = (f"cannot identify image file '{tmp_path}/data/faces/s1/x.png'; index bundle {tmp_path}/collections/"
               f"notes/versions/v1 lacks index.faiss. [Errno 2] No such file: /etc/arcsearch/key.pem: see "
               "http://example.com/a/b and s1/x.png")
    assert scrub_paths(message, roots) == (
        "cannot identify image file 'faces/s1/x.png'; index bundle notes/versions/v1 lacks index.faiss. "
        "[Errno 2] No such file: key.pem: see http://example.com/a/b and s1/x.png")
