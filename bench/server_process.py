"""Start ``arcsearch serve`` as a child process on a free loopback port, for benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_process(collections_dir: Path, data_root: Path, *, device: str = "cpu", ready_timeout_s: float = 180.0,
                   env: dict[str, str] | None = None, ready_headers: dict[str, str] | None = None
                   ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Yield (base URL, server process) of a ready server, ``env`` added to its environment; terminate it on exit."""
    port = free_port()
    environment = {**os.environ, "ARCSEARCH_COLLECTIONS_DIR": str(collections_dir),
                   "ARCSEARCH_DATA_ROOT": str(data_root), "ARCSEARCH_DEVICE": device, "ARCSEARCH_HOST": "127.0.0.1",
                   "ARCSEARCH_PORT": str(port), "ARCSEARCH_LOG_LEVEL": "warning", **(env or {})}
    process = subprocess.Popen([sys.executable, "-m", "arcsearch.cli", "serve"], env=environment)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with status {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", headers=ready_headers, timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"server not ready after {ready_timeout_s} s")
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def running_server(collections_dir: Path, data_root: Path, *, device: str = "cpu",
                   ready_timeout_s: float = 180.0) -> Iterator[str]:
    """Yield the base URL of a ready server; terminate it on exit."""
    with server_process(collections_dir, data_root, device=device, ready_timeout_s=ready_timeout_s) as (base, _):
        yield base
