"""Fixtures for tests/index: real embedder bundles (session-wide) and small corpora."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import bundles


@pytest.fixture(scope="session")
def bundle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def image_embedder_dir(bundle_root: Path) -> Path:
    return bundles.image_embedder(bundle_root)


@pytest.fixture(scope="session")
def text_embedder_dir(bundle_root: Path) -> Path:
    return bundles.text_embedder(bundle_root)


@pytest.fixture()
def small_faces(tmp_path: Path) -> Path:
    """3 people x 3 ORL faces, plus one corrupt .png and one text file named .jpg (both unreadable)."""
    faces = bundles.prepared().faces_dir
    root = tmp_path / "faces"
    for person in ("s1", "s2", "s3"):
        (root / person).mkdir(parents=True)
        for n in (1, 2, 3):
            shutil.copy(faces / person / f"{n}.pgm", root / person / f"{n}.pgm")
    (root / "s1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "s2" / "notes.jpg").write_text("not an image")
    return root
