"""The service through HTTP: a real uvicorn process (``python -m arcsearch.service.server``, conftest.server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.fuzz_cases import all_cases
from tests.service.helpers import HELD_OUT_PEOPLE, MAX_UPLOAD_BYTES, ServiceData, assert_error

IMAGES, TEXTS = "/v1/collections/images/search", "/v1/collections/texts/search"


def search_image(http: httpx.Client, path: Path, **form: Any) -> httpx.Response:
    return http.post(IMAGES, files={"file": (path.name, path.read_bytes(), "image/x-portable-graymap")},
                     data={key: str(value) for key, value in form.items()})


def test_collections_are_listed(http: httpx.Client) -> None:
    listed = {c["name"]: c for c in http.get("/v1/collections").json()["collections"]}
    assert set(listed) >= {"images", "texts", "scratch"}
    assert listed["images"] | {"embedder_sha256": "", "version": "", "embedder_origin": ""} == {
        "name": "images", "modality": "image", "status": "ready", "size": 400, "dim": 128, "embedder_sha256": "",
        "embedder_origin": "", "index_type": "Flat", "version": "", "last_reindex": None, "error": None,
        "index": {"search_params": "", "memory_mapped": False, "target_recall": None, "max_memory_bytes": None,
                  "recall_at_10": None, "query_ms_p50": None, "estimated_bytes": None}}
    assert listed["images"]["embedder_origin"].endswith("image-embedder")
    assert listed["texts"]["size"] == 100 and listed["texts"]["dim"] == 384
    assert http.get("/docs").status_code == 200


def test_held_out_face_finds_the_same_person_at_rank_one(http: httpx.Client, service_data: ServiceData) -> None:
    """Chance is 9/399 (the other 9 images of the person among the 399 others); we ask for at least 50%."""
    correct, total = 0, 0
    for person in HELD_OUT_PEOPLE:
        for number in (1, 6):
            query = service_data.faces_dir / person / f"{number}.pgm"
            response = search_image(http, query, k=2)
            assert response.status_code == 200, response.text
            hits = response.json()["queries"][0]["hits"]
            assert hits[0]["id"] == f"{person}/{number}.pgm"  # the indexed copy of the query itself
            others = [hit for hit in hits if hit["id"] != f"{person}/{number}.pgm"]
            correct += others[0]["label"] == person
            total += 1
    assert correct / total >= 0.5, f"precision@1 {correct}/{total}"


def test_text_finds_texts_of_the_same_class(http: httpx.Client, service_data: ServiceData) -> None:
    """20 held-out glosses against 100 indexed ones of the same 20 classes: chance is 5%."""
    queries = service_data.query_texts
    response = http.post(TEXTS, json={"texts": [q["text"] for q in queries], "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["collection"] == "texts" and "results" not in body and len(body["queries"]) == 20
    correct = sum(q["hits"][0]["label"] == query["label"] for q, query in zip(body["queries"], queries, strict=True))
    assert correct / len(queries) >= 0.5, f"precision@1 {correct}/20"
    single = http.post(TEXTS, json={"text": queries[0]["text"], "k": 2}).json()
    assert len(single["queries"]) == 1 and [hit["id"] for hit in single["queries"][0]["hits"]] == [
        hit["id"] for hit in body["queries"][0]["hits"][:2]]
    assert single["queries"][0]["hits"][0]["metadata"]["text"]


def test_reindex_swaps_the_index_without_failed_queries(http: httpx.Client, server: dict[str, Any],
                                                        service_data: ServiceData) -> None:
    new_rows = [row for row in service_data.indexed_texts[:100]] + service_data.query_texts
    items = [{"id": f"new-{i}", "text": row["text"], "label": row["label"]} for i, row in enumerate(new_rows)]
    stop, started, done = threading.Event(), threading.Event(), threading.Event()
    log: list[dict[str, Any]] = []

    def query_forever() -> None:
        with httpx.Client(base_url=server["url"], timeout=60) as client:
            while not stop.is_set():
                response = client.post("/v1/collections/scratch/search", json={"text": "a kind of tool", "k": 5})
                queries = response.json().get("queries") or [{"hits": []}]
                ids = {hit["id"].split("-")[0] for hit in queries[0]["hits"]}
                entry = {"status": response.status_code, "ids": ids, "during": started.is_set() and not done.is_set()}
                if "new" in ids and not log_has_new(log):
                    entry["job_status"] = client.get(f"/v1/jobs/{job_id[0]}").json()["status"]
                log.append(entry)

    job_id: list[str] = []
    thread = threading.Thread(target=query_forever)
    thread.start()
    try:
        time.sleep(0.5)
        accepted = http.post("/v1/reindex", json={"collection": "scratch", "items": items})
        assert accepted.status_code == 202, accepted.text
        job_id.append(accepted.json()["job_id"])
        started.set()
        assert accepted.headers["location"] == f"/v1/jobs/{job_id[0]}"
        assert_error(http.post("/v1/reindex", json={"collection": "scratch", "source": "scratch.jsonl"}),
                     409, "job_conflict")
        deadline = time.monotonic() + 120
        while (job := http.get(f"/v1/jobs/{job_id[0]}").json())["status"] not in {"succeeded", "failed"}:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        done.set()
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(60)
    assert job["status"] == "succeeded", job
    assert job["progress"].pop("rate_items_per_s") > 0
    assert job["progress"] == {"done": len(items), "total": len(items), "failed": 0, "resumed": 0, "eta_s": None}
    assert job["num_items"] == len(items)
    assert [e for e in log if e["status"] != 200] == []
    assert all(e["ids"] in ({"old"}, {"new"}) for e in log), "a response mixed two index versions"
    assert sum(e["during"] for e in log) >= 3, "too few queries overlapped the job"
    first_new = next(i for i, e in enumerate(log) if e["ids"] == {"new"})
    assert log[first_new]["job_status"] == "succeeded"
    assert all(e["ids"] == {"old"} for e in log[:first_new]) and all(e["ids"] == {"new"} for e in log[first_new:])
    listed = {c["name"]: c for c in http.get("/v1/collections").json()["collections"]}
    assert listed["scratch"]["size"] == len(items) and listed["scratch"]["version"] == job["version"]


def log_has_new(log: list[dict[str, Any]]) -> bool:
    return any("job_status" in entry for entry in log)


def multipart(payload: bytes) -> tuple[bytes, str]:
    boundary = "arcsearchtestboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pgm\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 65536):
        yield body[start:start + 65536]


FACE = Path("s1") / "1.pgm"
BAD_REQUESTS: list[tuple[str, int, str, dict[str, Any]]] = [
    ("non-image upload", 415, "unsupported_media_type",
     {"path": IMAGES, "files": {"file": ("a.jpg", b"definitely not an image")}}),
    ("empty upload", 422, "empty_upload", {"path": IMAGES, "files": {"file": ("a.png", b"")}}),
    ("upload over the limit", 413, "payload_too_large",
     {"path": IMAGES, "files": {"file": ("a.png", b"\0" * (MAX_UPLOAD_BYTES + 30_000))}}),
    ("body over the limit", 413, "payload_too_large",
     {"path": IMAGES, "files": {"file": ("a.png", b"\0" * (MAX_UPLOAD_BYTES * 3))}}),
    ("missing file", 422, "validation_error", {"path": IMAGES, "content": b'--b\r\nContent-Disposition: form-data; '
     b'name="k"\r\n\r\n3\r\n--b--\r\n', "headers": {"content-type": "multipart/form-data; boundary=b"}}),
    ("form without files", 415, "unsupported_media_type", {"path": IMAGES, "data": {"k": "3"}}),
    ("k zero", 422, "validation_error", {"path": TEXTS, "json": {"text": "a dog", "k": 0}}),
    ("k over max", 422, "validation_error", {"path": TEXTS, "json": {"text": "a dog", "k": 101}}),
    ("k not a number", 422, "validation_error", {"path": IMAGES, "face": True, "data": {"k": "many"}}),
    ("image k over max", 422, "validation_error", {"path": IMAGES, "face": True, "data": {"k": "5000"}}),
    ("empty text", 422, "validation_error", {"path": TEXTS, "json": {"text": "   "}}),
    ("over-long text", 422, "validation_error", {"path": TEXTS, "json": {"text": "word " * 1000}}),
    ("text and texts", 422, "validation_error", {"path": TEXTS, "json": {"text": "a", "texts": ["b"]}}),
    ("batch too large", 422, "validation_error", {"path": TEXTS, "json": {"texts": ["a"] * 65}}),
    ("unknown collection", 404, "collection_not_found", {"path": "/v1/collections/nope/search", "json": {"text": "a"}}),
    ("malformed json", 422, "invalid_json",
     {"path": TEXTS, "content": b'{"text": "a dog",', "headers": {"content-type": "application/json"}}),
    ("text to image collection", 400, "wrong_modality", {"path": IMAGES, "json": {"text": "a dog"}}),
    ("image to text collection", 400, "wrong_modality", {"path": TEXTS, "face": True}),
    ("source with ..", 403, "source_outside_data_root",
     {"path": "/v1/reindex", "json": {"collection": "scratch", "source": "../outside/secret.jsonl"}}),
    ("absolute source", 403, "source_outside_data_root",
     {"path": "/v1/reindex", "json": {"collection": "scratch", "source": "/etc/hostname"}}),
    ("symlink escape", 403, "source_outside_data_root",
     {"path": "/v1/reindex", "json": {"collection": "scratch", "source": "escape.jsonl"}}),
    ("symlinked folder escape", 403, "source_outside_data_root",
     {"path": "/v1/reindex", "json": {"collection": "scratch", "source": "escape-dir/secret.jsonl"}}),
    ("url source", 400, "invalid_source",
     {"path": "/v1/reindex", "json": {"collection": "scratch", "source": "http://example.com/t.jsonl"}}),
    ("file url source", 400, "invalid_source",
     {"path": "/v1/reindex", "json": {"collection": "scratch", "source": "file:///etc/hostname"}}),
    ("missing source", 400, "invalid_source",
     {"path": "/v1/reindex", "json": {"collection": "scratch", "source": "no/such.jsonl"}}),
    ("reindex unknown collection", 404, "collection_not_found",
     {"path": "/v1/reindex", "json": {"collection": "nope", "source": "texts.jsonl"}}),
    ("reindex without source or items", 422, "validation_error", {"path": "/v1/reindex", "json": {"collection": "x"}}),
    ("unknown job", 404, "job_not_found", {"method": "GET", "path": "/v1/jobs/0123456789abcdef"}),
    ("unknown route", 404, "not_found", {"method": "GET", "path": "/v1/nothing"}),
    ("wrong method", 405, "method_not_allowed", {"method": "GET", "path": TEXTS}),
]


@pytest.mark.parametrize(("status", "code", "request_args"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_with_the_error_shape(http: httpx.Client, service_data: ServiceData, status: int,
                                                     code: str, request_args: dict[str, Any]) -> None:
    args = dict(request_args)
    method, path = args.pop("method", "POST"), args.pop("path")
    if args.pop("face", False):
        args["files"] = {"file": ("1.pgm", (service_data.faces_dir / FACE).read_bytes())}
    assert_error(http.request(method, path, **args), status, code)


def test_chunked_body_over_the_limit_is_refused_while_streaming(http: httpx.Client) -> None:
    body, content_type = multipart(b"\0" * (MAX_UPLOAD_BYTES * 3))
    response = http.post(IMAGES, content=chunks(body), headers={"content-type": content_type})
    assert_error(response, 413, "payload_too_large")


def test_fuzz_malformed_requests_never_get_a_500(http: httpx.Client, service_data: ServiceData) -> None:
    cases = all_cases(service_data.faces_dir / FACE)
    assert len(cases) >= 300
    statuses: dict[int, int] = {}
    for case in cases:
        args = dict(case)
        response = http.request(args.pop("method"), args.pop("path"), **args)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.get("path"), response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}, response.text[:300]
    assert sum(n for status, n in statuses.items() if status >= 400) >= 0.9 * len(cases), statuses
    assert http.get("/healthz").json() == {"status": "ok"}


def test_server_is_still_alive_and_logged_no_500(http: httpx.Client, server: dict[str, Any],
                                                 service_data: ServiceData) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    assert search_image(http, service_data.faces_dir / FACE, k=1).json()["queries"][0]["hits"][0]["id"] == "s1/1.pgm"
    log = server["log"].read_text()
    assert "status=500" not in log and "Traceback" not in log, log[-3000:]


def test_access_log_lines_carry_the_request_id(http: httpx.Client, server: dict[str, Any]) -> None:
    request_id = http.get("/v1/collections").headers["x-request-id"]
    deadline = time.monotonic() + 10
    while not (lines := [line for line in server["log"].read_text().splitlines() if request_id in line]):
        assert time.monotonic() < deadline, "no log line names the request id"
        time.sleep(0.05)
    assert len(lines) == 1 and f"[{request_id}]" in lines[0], lines
    assert "arcsearch.access" in lines[0] and "method=GET path=/v1/collections status=200 duration_ms=" in lines[0]
    assert '"GET /v1/collections HTTP/1.1"' not in server["log"].read_text()  # uvicorn's access log is off
