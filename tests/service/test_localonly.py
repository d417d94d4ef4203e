"""With no API key: only loopback Host names (DNS rebinding) and loopback clients, also under ``uvicorn --factory``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from arcsearch.service.app import create_app
from arcsearch.service.localonly import host_name, is_loopback
from tests.bundles import REPO
from tests.service.helpers import ServiceData, assert_error, free_port, local_client, service_settings

KEY = "local-only-admin-key-0123"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil",
                                  "10.0.0.1:8000", "[2001:db8::1]:80", "0.0.0.0:8000"])
def test_a_foreign_host_name_cannot_drive_an_open_server(http: httpx.Client, host: str) -> None:
    """DNS rebinding: a page elsewhere resolves its name to 127.0.0.1; the browser sends its own Host."""
    response = http.delete("/v1/collections/no-such-collection", headers={"Host": host})
    assert_error(response, 421, "untrusted_host")
    assert_error(http.get("/v1/collections", headers={"Host": host}), 421, "untrusted_host")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "localhost.:80", "127.0.0.1", "127.3.2.1:9",
                                  "[::1]", "[::1]:8000"])
def test_loopback_host_names_are_served(http: httpx.Client, host: str) -> None:
    assert http.get("/v1/collections", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(("header", "name"), [("localhost:8000", "localhost"), ("[::1]:80", "[::1]"),
                                              ("[::1]", "[::1]"), ("::1", "::1"), ("a.b", "a.b")])
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_ipv4_mapped_loopback_is_loopback() -> None:
    assert is_loopback("::ffff:127.0.0.1") and not is_loopback("::ffff:10.0.0.1")


@pytest.fixture(scope="module")
def app_settings(service_data: ServiceData) -> Any:
    return service_settings(service_data)


def remote_client(app: Any) -> TestClient:
    """A client calling from another machine (192.0.2.10, a documentation address; nothing is sent anywhere)."""
    return TestClient(app, base_url="http://127.0.0.1", client=("192.0.2.10", 40000))


def test_other_machines_are_refused_without_keys(app_settings: Any) -> None:
    """Whatever the bind (the factory cannot know it), a request from another machine is refused."""
    assert_error(remote_client(create_app(app_settings)).get("/healthz"), 403, "non_loopback_client")
    assert local_client(create_app(app_settings)).get("/healthz").status_code == 200


def test_allow_non_loopback_and_keys_let_other_machines_in(app_settings: Any) -> None:
    allowed = app_settings.model_copy(update={"allow_non_loopback": True})
    assert remote_client(create_app(allowed)).get("/healthz").status_code == 200
    keyed = app_settings.model_copy(update={"admin_keys": SecretStr(KEY)})
    remote = remote_client(create_app(keyed))
    assert remote.get("/healthz", headers={"Host": "search.example"}).status_code == 200
    assert_error(remote.get("/v1/collections", headers={"Host": "search.example"}), 401, "unauthorized")


def test_allowed_hosts_extend_the_loopback_names(app_settings: Any) -> None:
    app = create_app(app_settings.model_copy(update={"allowed_hosts": "search.internal, Proxy.Example"}))
    client = local_client(app)
    assert client.get("/healthz", headers={"Host": "search.internal:8000"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "proxy.example"}).status_code == 200
    assert_error(client.get("/healthz", headers={"Host": "other.example"}), 421, "untrusted_host")


@pytest.fixture(scope="module")
def factory_server(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``uvicorn --factory arcsearch.service.app:create_app``: no `arcsearch serve`, so no bind check ran."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "ARCSEARCH_COLLECTIONS_DIR": str(tmp_path_factory.mktemp("none")),
           "ARCSEARCH_DATA_ROOT": str(service_data.data_root), "ARCSEARCH_DEVICE": "cpu"}
    log = tmp_path_factory.mktemp("factory") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "arcsearch.service.app:create_app",
                                 "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, Path(log).read_text()
            assert time.monotonic() < deadline, Path(log).read_text()
            try:
                httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_factory_under_plain_uvicorn_refuses_foreign_hosts(factory_server: str) -> None:
    with httpx.Client(base_url=factory_server, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        assert_error(client.delete("/v1/collections/texts", headers={"Host": "evil.example"}), 421, "untrusted_host")
