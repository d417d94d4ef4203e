"""The HTTP edge through a real uvicorn process with API keys: the key is checked before a body is read,
JSON bodies are small and shallow, metric labels stay bounded, /readyz tells a stranger only its state,
and metadata that would poison later searches is refused at the door."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.helpers import ServiceData, assert_error, live_server

ADMIN_KEY = "edge-admin-key-0123456789"
READ_KEY = "edge-read-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}
TEXTS = "/v1/collections/texts/search"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def keyed(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server with keys and default body limits over a private copy of the ``scratch`` collection."""
    root = tmp_path_factory.mktemp("edge")
    shutil.copytree(service_data.collections_dir / "scratch", root / "collections" / "scratch")
    log = root / "server.log"
    with live_server(root / "collections", service_data.data_root, log, admin_keys=ADMIN_KEY,
                     read_keys=READ_KEY) as (url, proc):
        yield {"url": url, "pid": proc.pid, "log": log, "port": int(url.rsplit(":", 1)[1])}


@pytest.fixture()
def api(keyed: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed["url"], timeout=60) as client:
        yield client


def nested(depth: int) -> Any:
    """A list nested ``depth`` levels deep."""
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def raw_json(value: Any) -> bytes:
    """``value`` as JSON the way a careless client writes it: NaN allowed, lone surrogates as \\u escapes."""
    return json.dumps(value).encode()


def post_raw(api: httpx.Client, method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return api.request(method, path, content=body, headers={"Content-Type": "application/json", **headers})


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (VmHWM of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM line")


def status_line_after_headers(port: int, path: str, *, declared_bytes: int, timeout_s: float) -> str:
    """Send only the headers of a JSON POST declaring ``declared_bytes`` of body; the first response line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {declared_bytes}\r\n\r\n".encode())
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    return received.split(b"\r\n", 1)[0].decode()


def test_the_key_is_checked_before_the_body_is_read(keyed: dict[str, Any]) -> None:
    started = time.monotonic()
    line = status_line_after_headers(keyed["port"], TEXTS, declared_bytes=64 * MiB, timeout_s=10)
    assert line.startswith("HTTP/1.1 401"), line
    assert time.monotonic() - started < 3


def test_unauthenticated_large_bodies_cost_no_memory(keyed: dict[str, Any], api: httpx.Client) -> None:
    """Two 16 MiB bodies of ``[],`` (each ~340 MB once parsed) without a key; /healthz answers meanwhile."""
    body = b"[" + b"[]," * (16 * MiB // 3) + b"1]"
    before = peak_rss_bytes(keyed["pid"])
    latencies: list[float] = []

    def send() -> None:
        try:
            with socket.create_connection(("127.0.0.1", keyed["port"]), timeout=30) as sock:
                sock.sendall(f"POST {TEXTS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                             f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                sock.recv(4096)
        except OSError:
            pass  # the server may answer 401 and close before the whole body is sent

    senders = [threading.Thread(target=send) for _ in range(2)]
    for sender in senders:
        sender.start()
    watch_until = time.monotonic() + 1.0
    while any(sender.is_alive() for sender in senders) or time.monotonic() < watch_until:
        started = time.monotonic()
        assert api.get("/healthz").status_code == 200
        latencies.append(time.monotonic() - started)
        time.sleep(0.02)
    grown = peak_rss_bytes(keyed["pid"]) - before
    assert grown < 48 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB"
    assert len(latencies) >= 10 and max(latencies) < 1.0, latencies


def test_json_bodies_have_a_small_limit(api: httpx.Client) -> None:
    body = raw_json({"text": "a" * (2 * MiB)})
    error = assert_error(post_raw(api, "POST", TEXTS, body, READ), 413, "payload_too_large")
    assert error["details"]["limit_bytes"] < 2 * MiB


@pytest.mark.parametrize("depth", [200, 100_000])
def test_deeply_nested_json_is_refused(api: httpx.Client, depth: int) -> None:
    body = b'{"text": "a dog", "filter": {"metadata": {"x": ' + b"[" * depth + b"]" * depth + b"}}}"
    assert_error(post_raw(api, "POST", TEXTS, body, READ), 422, "json_too_deep")


# methods HTTP parsers know (httptools, used by uvicorn when installed, answers 400 itself to made-up ones)
# but the service has no route for: each must count as "other", not become a label of its own
RARE_METHODS = ("PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "PURGE", "REPORT", "SEARCH",
                "TRACE", "LINK", "UNLINK", "NOTIFY", "SUBSCRIBE", "MKCALENDAR")


def test_metric_labels_stay_bounded(api: httpx.Client) -> None:
    for i in range(60):
        api.request(RARE_METHODS[i % len(RARE_METHODS)], f"/x{i}")
    for method in ("GET", "PUT", "OPTIONS"):
        api.request(method, "/healthz")
    response = api.get("/metrics", headers=READ)
    assert response.status_code == 200
    labels = [s.labels for family in text_string_to_metric_families(response.text) for s in family.samples
              if s.name == "arcsearch_requests_total"]
    methods = {label["method"] for label in labels}
    routes = {label["route"] for label in labels}
    assert "other" in methods and methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}
    assert not any(route.startswith("/x") for route in routes), routes


def test_process_and_build_metrics(api: httpx.Client) -> None:
    families = {f.name: f for f in text_string_to_metric_families(api.get("/metrics", headers=READ).text)}
    assert families["process_resident_memory_bytes"].samples[0].value > 10 * MiB
    assert families["process_cpu_seconds"].samples[0].value > 0
    build = families["arcsearch_build_info"].samples[0]
    assert build.value == 1 and set(build.labels) == {"version", "python", "torch", "faiss"}
    assert all(build.labels.values()), build.labels


def test_readyz_tells_a_stranger_only_the_state(api: httpx.Client) -> None:
    stranger = api.get("/readyz")
    assert stranger.status_code == 200 and stranger.json() == {"status": "ready"}
    assert api.get("/readyz", headers={"Authorization": "Bearer not-a-key"}).json() == {"status": "ready"}
    assert api.get("/readyz", headers=READ).json() == {"status": "ready", "collections": {"scratch": "ready"}}


@pytest.mark.parametrize(("body", "field"), [
    ({"text": "a dog", "metadata": {"x": "\ud800"}}, "metadata"),
    ({"text": "a dog", "metadata": {"x": ["ok", {"y": "\udfff"}]}}, "metadata"),
    ({"text": "a dog", "metadata": {"\ud800": 1}}, "metadata"),
    ({"text": "a dog", "metadata": {"x": float("nan")}}, "metadata"),
    ({"text": "a dog", "metadata": {"x": [float("inf")]}}, "metadata"),
    ({"text": "a dog", "metadata": {"x": 10**30}}, "metadata"),
    ({"text": "a dog", "metadata": {"x": nested(20)}}, "metadata"),
    ({"text": "a dog", "metadata": {f"k{i}": i for i in range(1000)}}, "metadata"),
    ({"text": "a dog", "metadata": {"x": "y" * 100_000}}, "metadata"),
    ({"text": "a dog", "label": "a\ud800"}, "label"),
    ({"text": "a \ud800 dog"}, "text"),
])
def test_poison_item_fields_are_refused(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = post_raw(api, "PUT", "/v1/collections/scratch/items/poison", raw_json(body), ADMIN)
    error = assert_error(response, 422, "validation_error")
    assert field in error["message"], error
    assert_error(api.get("/v1/collections/scratch/items/poison", headers=READ), 404, "item_not_found")


@pytest.mark.parametrize("item_id", ["a%0Ab", "a%0Db", "tab%09", "nul%00"])
def test_item_ids_with_control_characters_are_refused(api: httpx.Client, item_id: str) -> None:
    response = post_raw(api, "PUT", f"/v1/collections/scratch/items/{item_id}", raw_json({"text": "a dog"}), ADMIN)
    assert_error(response, 422, "validation_error")


def test_poison_inline_reindex_items_are_refused(api: httpx.Client) -> None:
    items = [{"id": "ok", "text": "a dog"}, {"id": "bad", "text": "a cat", "metadata": {"x": float("nan")}}]
    response = post_raw(api, "POST", "/v1/reindex", raw_json({"collection": "scratch", "items": items}), ADMIN)
    error = assert_error(response, 422, "validation_error")
    assert "items.1.metadata" in error["message"], error
    for bad in ({"id": "a\nb", "text": "x"}, {"id": "\ud800", "text": "x"}):
        response = post_raw(api, "POST", "/v1/reindex", raw_json({"collection": "scratch", "items": [bad]}), ADMIN)
        assert "items.0.id" in assert_error(response, 422, "validation_error")["message"]


def test_poison_rows_of_a_source_file_are_failures_not_items(api: httpx.Client, keyed: dict[str, Any],
                                                             service_data: ServiceData) -> None:
    good = [{"id": f"good-{i}", "text": text, "label": "ok", "kind": "good"}
            for i, text in enumerate(["a small dog", "a big tree", "a red car"])]
    lines = [json.dumps(row) for row in good] + [
        '{"id": "nan", "text": "a cat", "label": "x", "score": NaN}',
        '{"id": "inf", "text": "a cat", "label": "x", "score": [Infinity]}',
        json.dumps({"id": "surrogate", "text": "a cat", "label": "x", "note": "\ud800"}),
        json.dumps({"id": "label", "text": "a cat", "label": "\udc00"}),
        json.dumps({"id": "ok\nFORGED line", "text": "", "label": "x"}),
        json.dumps({"id": "ctl\rid", "text": "a cat", "label": "x"}),
    ]
    source = service_data.data_root / "edge-poison.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    accepted = post_raw(api, "POST", "/v1/reindex", raw_json({"collection": "scratch", "source": source.name}), ADMIN)
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 120
    while (job := api.get(f"/v1/jobs/{accepted.json()['job_id']}", headers=READ).json())["status"] not in {
            "succeeded", "failed"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "succeeded" and job["num_items"] == 3, job
    assert len(job["failures"]) == 6, job
    found = post_raw(api, "POST", "/v1/collections/scratch/search", raw_json(
        {"text": "a dog", "k": 10, "filter": {"metadata": {"kind": "good"}}}), READ)
    assert found.status_code == 200, found.text
    assert {hit["id"] for hit in found.json()["queries"][0]["hits"]} == {"good-0", "good-1", "good-2"}
    assert api.get("/v1/collections/scratch/items/good-0", headers=READ).status_code == 200
    assert not any(line.startswith("FORGED") for line in keyed["log"].read_text().splitlines())
