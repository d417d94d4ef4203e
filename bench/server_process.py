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
def running_server(collections_dir: Path, data_root: Path, *, device: str = "cpu",
                   ready_timeout_s: float = 180.0) -> Iterator[str]:
    """Yield the base URL of a ready server; terminate it on exit."""
    port = free_port()
    env = {**os.environ, "ARCSEARCH_COLLECTIONS_DIR": str(collections_dir), "ARCSEARCH_DATA_ROOT": str(data_root),
           "ARCSEARCH_DEVICE": device, "ARCSEARCH_HOST": "127.0.0.1", "ARCSEARCH_PORT": str(port),
           "ARCSEARCH_LOG_LEVEL": "warning"}
    process = subprocess.Popen([sys.executable, "-m", "arcsearch.cli", "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with status {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"server not ready after {ready_timeout_s} s")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
