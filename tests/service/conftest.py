"""Fixtures for tests/service, over the collections of ``service_data`` (tests/conftest.py).

``client`` is a TestClient on them; ``server`` a real uvicorn process (``python -m arcsearch.service.server``) on a
free loopback port, started once for the tests over HTTP, and ``http`` an httpx client of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from arcsearch.service.app import create_app
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


@pytest.fixture(scope="module", params=["faiss", "milvus"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that uses it runs twice: as [faiss] and as [milvus] (against the session's real Milvus server,
    ``milvus_uri``: skipped loudly where it cannot start, a failure with ARCSEARCH_REQUIRE_MILVUS=1)."""
    if request.param == "milvus":
        request.getfixturevalue("milvus_uri")
    return str(request.param)


@pytest.fixture(scope="module")
def backend_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings (as ``live_server`` keywords) of a server whose new collections are stored in ``backend``."""
    if backend == "faiss":
        return {"index_backend": "faiss"}
    return {"index_backend": "milvus", "milvus_uri": request.getfixturevalue("milvus_uri")}
