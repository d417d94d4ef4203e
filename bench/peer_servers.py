"""The peers' servers as child processes on loopback, and what the benchmark reads about them from /proc.

``chroma_server`` starts ``chroma run`` on 127.0.0.1 and refuses to go on if any process of its tree listens on
another address; Milvus is started by ``arcsearch.milvus_server`` (a private network namespace behind a loopback
relay). ``tree_rss_bytes`` sums the resident memory of a process and its descendants; sizes are bytes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.server_process import free_port

logger = logging.getLogger(__name__)

CHROMA_READY_TIMEOUT_S = 120.0


class PeerUnavailableError(RuntimeError):
    """A peer cannot run here; the message says why (reported in the table, never measured)."""


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/<pid>/task/*/children)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                queue.extend(int(child) for child in (task / "children").read_text().split())
    return found


def _status_kib(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def tree_rss_bytes(pid: int, *, skip_root: bool = False) -> int:
    """Resident memory (VmRSS) of ``pid``'s process tree in bytes; ``skip_root`` leaves ``pid`` itself out."""
    pids = descendants(pid)[1 if skip_root else 0:]
    return 1024 * sum(_status_kib(p, "VmRSS") for p in pids)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _hex_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    return ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listening_addresses(pid: int) -> list[str]:
    """``address:port`` of every TCP socket in LISTEN state held by ``pid``'s process tree (/proc/net/tcp{,6})."""
    inodes = set().union(*(_socket_inodes(p) for p in descendants(pid)))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    address, port = fields[1].split(":")
                    found.append(f"{_hex_address(address)}:{int(port, 16)}")
    return found


def beyond_loopback(addresses: list[str]) -> list[str]:
    """The ``address:port`` entries whose address is not a loopback address (0.0.0.0 and :: are not)."""
    return [a for a in addresses if not ipaddress.ip_address(a.rsplit(":", 1)[0]).is_loopback]


def check_loopback_only(pid: int, what: str) -> list[str]:
    """The listening addresses of ``pid``'s tree; PeerUnavailableError if one is not a loopback address."""
    addresses = listening_addresses(pid)
    exposed = beyond_loopback(addresses)
    if exposed:
        raise PeerUnavailableError(f"{what} listens beyond loopback on {exposed}; stopped it")
    return addresses


def chroma_command() -> list[str]:
    """The ``chroma`` CLI of this environment (next to the interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("chroma")
    found = str(beside) if beside.is_file() else shutil.which("chroma")
    if found is None:
        raise PeerUnavailableError("no 'chroma' command (pip install -e '.[bench]')")
    return [found]


@contextlib.contextmanager
def chroma_server(path: Path, *, ready_timeout_s: float = CHROMA_READY_TIMEOUT_S) -> Iterator[tuple[str, int, int]]:
    """Yield (host, port, pid) of ``chroma run`` serving ``path`` on 127.0.0.1, checked to listen on loopback
    only; terminate it on exit."""
    port = free_port()
    path.mkdir(parents=True, exist_ok=True)
    log_path = path.parent / f"{path.name}.log"
    command = [*chroma_command(), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    try:
        _wait_for_heartbeat(process, f"http://127.0.0.1:{port}/api/v2/heartbeat", ready_timeout_s, log_path)
        logger.info("chroma run listening on %s (log %s)", check_loopback_only(process.pid, "chroma run"), log_path)
        yield "127.0.0.1", port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _wait_for_heartbeat(process: subprocess.Popen, url: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PeerUnavailableError(f"chroma run exited with status {process.returncode}; log {log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise PeerUnavailableError(f"chroma run did not answer within {timeout_s:.0f} s; log {log_path}")
