"""Helpers for tests/service: the shared test data description, settings, and the error-shape check."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from arcsearch.index.collections import EMBEDDER_DIR
from arcsearch.index.serving_lock import LOCK_FILE
from arcsearch.service.settings import Settings
from tests.bundles import REPO

HELD_OUT_PEOPLE = [f"s{n}" for n in range(31, 41)]
START_TIMEOUT_S = 180.0
MAX_UPLOAD_BYTES = 200_000  # limits of the shared live server (conftest.server): each image file,
MAX_REQUEST_BYTES = 1_000_000  # and any body (all files of one image search together)

SERVER_MODULE = "arcsearch.service.server"  # python -m SERVER_MODULE runs the service


@dataclass(frozen=True)
class ServiceData:
    collections_dir: Path
    data_root: Path
    faces_dir: Path
    indexed_texts: list[dict[str, Any]]
    query_texts: list[dict[str, Any]]
    image_embedder: Path
    text_embedder: Path


def service_settings(data: ServiceData, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"collections_dir": data.collections_dir, "data_root": data.data_root,
                              "device": "cpu", "batch_size": 8,
                              "torch_parallel_min_batch": 0} | overrides  # leave the test process's torch alone
    return Settings(**values)


def local_client(app: Any, **options: Any) -> TestClient:
    """A TestClient that calls as a client on this machine does (loopback address, ``Host: 127.0.0.1``): with
    no API key configured the app answers nothing else (service.localonly)."""
    return TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000), **options)


def wait_ready(client: TestClient, timeout_s: float = 120.0) -> None:
    registry = client.app.state.registry  # type: ignore[attr-defined]
    assert registry.wait_ready(timeout_s), "collections did not load in time"


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response has ``status`` and exactly the one error shape with ``code``; returns the error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body["error"]


def wait_job(client: TestClient, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{job_id}`` until the job has finished; returns its last state."""
    deadline = time.monotonic() + timeout_s
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] in {"queued", "running"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def finish(url: str, job_id: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """Poll a live server's ``GET /v1/jobs/{job_id}`` until the job has finished; returns its last state."""
    deadline = time.monotonic() + timeout_s
    while (job := httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json())["status"] in {"queued", "running"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment(collections_dir: Path, data_root: Path, port: int, **env: str) -> dict[str, str]:
    """The environment of ``python -m arcsearch.service.server`` on 127.0.0.1:``port`` (extra ``ARCSEARCH_*``
    in ``env``)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "ARCSEARCH_COLLECTIONS_DIR": str(collections_dir),
            "ARCSEARCH_DATA_ROOT": str(data_root), "ARCSEARCH_DEVICE": "cpu", "ARCSEARCH_HOST": "127.0.0.1",
            "ARCSEARCH_PORT": str(port)} | {f"ARCSEARCH_{key.upper()}": value for key, value in env.items()}


def served_copy(collections_dir: Path, out: Path) -> Path:
    """A copy of a collections folder for another server process (one process serves a folder): embedder
    bundles are hard-linked (never written), everything else is copied."""
    def copy(src: str, dst: str) -> object:
        parts = Path(src).relative_to(collections_dir).parts  # <collection>/embedder/<file>
        return os.link(src, dst) if len(parts) > 2 and parts[1] == EMBEDDER_DIR else shutil.copy2(src, dst)
    return Path(shutil.copytree(collections_dir, out, copy_function=copy, ignore=shutil.ignore_patterns(LOCK_FILE)))


@contextmanager
def live_server(collections_dir: Path, data_root: Path, log_path: Path, *, ready_path: str = "/readyz", **env: str
                ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python -m arcsearch.service.server`` on a free loopback port (extra ``ARCSEARCH_*`` settings in ``env``),
    appending its output to ``log_path``; yield (base URL, process) once ``ready_path`` answers 200; stop it
    after."""
    port = free_port()
    environment = server_environment(collections_dir, data_root, port, **env)
    url = f"http://127.0.0.1:{port}"
    with log_path.open("a") as log:
        proc = subprocess.Popen([sys.executable, "-m", SERVER_MODULE], cwd=REPO, env=environment, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                assert proc.poll() is None, f"server exited early:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"server not ready in time:\n{log_path.read_text()}"
                try:
                    if httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
