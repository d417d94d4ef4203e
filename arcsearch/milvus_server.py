"""A real Milvus standalone server for the tests and benchmarks, reachable from this machine only.

The PyPI package ``milvus`` (2.3.5) runs Milvus standalone from one binary, but its gRPC and HTTP ports listen
on all interfaces (``*:19530``, ``*:9091`` and six more; only its embedded etcd binds 127.0.0.1). So it runs in
a private network namespace that has nothing but loopback (``unshare --net``, with ``--map-root-user`` for a
user who is not root), and the only way in is one TCP port on the host's 127.0.0.1: this process binds it
(port 0) and hands the listening socket to the launcher inside the namespace, which relays each connection to
Milvus's 127.0.0.1:19530 there. A socket keeps the namespace it was made in, so the client side of every
connection reaches Milvus only through loopback inside the namespace, while pytest stays one ordinary process
(any test file may use the server, however pytest was started).

The launcher is this module run as ``python -m arcsearch.milvus_server --listen-fd N ...`` inside the namespace; it
stops Milvus when its standard input closes (the calling process ended, even if killed) or on SIGTERM. The test
session (tests/conftest.py) and the peers benchmark (bench/peers.py) start the server through ``start_milvus``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib.util
import logging
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

READY = "MILVUS-READY"
START_TIMEOUT_S = 300.0  # the first start unpacks ~250 MB of binaries; a later one takes ~12 s on 2 busy cores
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
RELAY_CHUNK_BYTES = 256 * 1024
# A Strong-consistency read waits for the next time tick: ~250 ms a search at Milvus's default of 200 ms.
TIME_TICK_MS = 20


class MilvusStartError(RuntimeError):
    """The server could not be started here; the message names what is missing or what went wrong."""


def missing_parts() -> list[str]:
    """What this machine lacks to run the server (empty when nothing is missing)."""
    missing = [f"Python package {name!r} (pip install -e '.[milvus]')"
               for name in ("milvus", "pymilvus") if importlib.util.find_spec(name) is None]
    if shutil.which("unshare") is None:
        missing.append("the 'unshare' command (Debian package util-linux)")
    if not sys.platform.startswith("linux"):
        missing.append("Linux network namespaces (this is " + sys.platform + ")")
    return missing


@dataclass
class MilvusProcess:
    """A running server: ``uri`` is ``http://127.0.0.1:<port>`` (the relay); logs are under ``work_dir``."""

    uri: str
    process: subprocess.Popen[bytes]
    work_dir: Path

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Close the launcher's stdin (it stops Milvus and exits); terminate, then kill, if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # type: ignore[union-attr]
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout_s)


def namespace_command() -> list[str]:
    """``unshare`` into a new network namespace; a user who is not root also needs a user namespace."""
    return ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])


def start_milvus(work_dir: Path, *, bin_cache: Path, timeout_s: float = START_TIMEOUT_S) -> MilvusProcess:
    """Start the server in a private network namespace; returns once it answers. Raises MilvusStartError."""
    missing = missing_parts()
    if missing:
        raise MilvusStartError("missing " + "; ".join(missing))
    work_dir, bin_cache = work_dir.resolve(), bin_cache.resolve()  # the launcher runs in work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    command = [*namespace_command(), sys.executable, "-m", "arcsearch.milvus_server", "--listen-fd",
               str(listener.fileno()), "--data-dir", str(work_dir / "server"), "--bin-cache", str(bin_cache)]
    log_path = work_dir / "launcher.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=work_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                   pass_fds=[listener.fileno()], start_new_session=True)
    listener.close()  # the launcher holds it now
    server = MilvusProcess(f"http://127.0.0.1:{port}", process, work_dir)
    try:
        _wait_ready(process, timeout_s)
    except MilvusStartError as exc:
        server.stop(timeout_s=10)
        raise MilvusStartError(f"{exc}; {' '.join(command[:3])} ...; log {log_path}:\n{_tail(log_path)}") from None
    logger.info("Milvus standalone serving at %s (private network namespace, logs in %s)", server.uri, work_dir)
    return server


def _wait_ready(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 1.0)
        if readable:
            line = process.stdout.readline()
            if line.strip() == READY.encode():
                return
            if not line:
                break
    if process.poll() is not None:
        raise MilvusStartError(f"the launcher exited with status {process.returncode} before Milvus answered")
    raise MilvusStartError(f"Milvus did not answer within {timeout_s:.0f} s")


def _tail(path: Path, *, max_bytes: int = 3000) -> str:
    data = path.read_bytes() if path.is_file() else b""
    return data[-max_bytes:].decode(errors="replace")


# ---- inside the namespace ----

def loopback_up() -> None:
    """Bring ``lo`` up (a new network namespace starts with it down), without needing iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def check_private_namespace() -> None:
    """Refuse to start Milvus (which binds all interfaces) anywhere but a namespace with only loopback."""
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        raise MilvusStartError(f"not in a private network namespace (interfaces: {names}); refusing to start "
                               "Milvus, which listens on all interfaces")


def cached_binaries(base_dir: Path, bin_cache: Path) -> None:
    """Link ``base_dir/bin`` to the server binaries unpacked once into ``bin_cache`` (unpacking takes ~15 s)."""
    import milvus

    if not (bin_cache / "milvus").is_file():
        bin_cache.parent.mkdir(parents=True, exist_ok=True)
        staging = bin_cache.with_name(f".{bin_cache.name}.partial-{os.getpid()}")
        milvus._initialize_data_files(str(staging))  # the package's own unpacking, into staging/bin
        with contextlib.suppress(OSError):  # another session unpacked it first
            (staging / "bin").rename(bin_cache)
        shutil.rmtree(staging, ignore_errors=True)
    base_dir.mkdir(parents=True, exist_ok=True)
    (base_dir / "bin").symlink_to(bin_cache, target_is_directory=True)


async def relay(listener: socket.socket, port: int, stop: asyncio.Event) -> None:
    """Forward each connection on ``listener`` to 127.0.0.1:``port`` (in this namespace) until ``stop``."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(RELAY_CHUNK_BYTES):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, sock=listener)
    async with server:
        print(READY, flush=True)
        await stop.wait()


def serve(listen_fd: int, data_dir: Path, bin_cache: Path) -> None:
    """Start Milvus in this (private) namespace and relay the inherited listener to it until told to stop."""
    from milvus import MilvusServer

    loopback_up()
    check_private_namespace()
    cached_binaries(data_dir, bin_cache)
    server = MilvusServer()
    server.set_base_dir(str(data_dir))
    server.config.set("proxy.timeTickInterval", TIME_TICK_MS)
    server.start()  # waits for /healthz
    try:
        asyncio.run(_relay_until_stopped(socket.socket(fileno=listen_fd), server.listen_port))
    finally:
        server.stop()


async def _relay_until_stopped(listener: socket.socket, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def wait_for_stdin_eof() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_stdin_eof, daemon=True).start()
    await relay(listener, port, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-fd", type=int, required=True, help="an inherited listening TCP socket")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--bin-cache", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    serve(args.listen_fd, args.data_dir, args.bin_cache)


if __name__ == "__main__":
    main()
