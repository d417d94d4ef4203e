"""Fixtures for tests/service: a collections folder built once per session, and a data root.

Collections (all built with the real embedders of tests/bundles.py):
- ``images``: all 400 ORL faces;   ``texts``: 5 glosses of each of 20 WordNet classes (100 texts);
- ``scratch``: 20 texts, re-indexed by the live-server tests;
- ``scratch2`` (texts) and ``scratch-images`` (6 faces): re-indexed by the TestClient tests.

``client`` is a TestClient on them; ``server`` a real uvicorn process (``python -m service.server``) on a
free loopback port, started once for the tests over HTTP, and ``http`` an httpx client of it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from index.collections import index_collection
from service.app import create_app
from tests import bundles
from tests.service.helpers import (
    MAX_REQUEST_BYTES,
    MAX_UPLOAD_BYTES,
    ServiceData,
    live_server,
    local_client,
    served_copy,
    service_settings,
    wait_ready,
)


def _copy_faces(faces: Path, out: Path, people: list[str], numbers: list[int]) -> Path:
    for person in people:
        (out / person).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            shutil.copy(faces / person / f"{n}.pgm", out / person / f"{n}.pgm")
    return out


@pytest.fixture(scope="session")
def service_data(tmp_path_factory: pytest.TempPathFactory) -> ServiceData:
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
def client(service_data: ServiceData) -> Iterator[TestClient]:
    """A TestClient on an app over the shared collections, loaded once for the session (tests that change
    its settings restore them)."""
    with local_client(create_app(service_settings(service_data))) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.fixture(scope="session")
def server(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Start the live server, wait for /readyz, yield {"url", "log"}; stop it at the end of the session. It serves
    a copy of the collections (one process serves a folder, and ``client`` serves the original)."""
    out = tmp_path_factory.mktemp("server")
    log_path = out / "server.log"
    collections = served_copy(service_data.collections_dir, out / "collections")
    with live_server(collections, service_data.data_root, log_path, batch_size="8",
                     max_upload_bytes=str(MAX_UPLOAD_BYTES), max_request_bytes=str(MAX_REQUEST_BYTES)) as (url, _):
        yield {"url": url, "log": log_path}


@pytest.fixture()
def http(server: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server["url"], timeout=60) as client:
        yield client
