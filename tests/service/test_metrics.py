"""GET /metrics (Prometheus text format) and request ids in responses and log records."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from arcsearch.service.app import create_app
from tests.service.helpers import ServiceData, local_client, service_settings

IMAGES, TEXTS = "/v1/collections/images/search", "/v1/collections/texts/search"


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_routes_stages_batches_sizes_and_jobs(client: TestClient, service_data: ServiceData) -> None:
    before = samples(client)
    face = (service_data.faces_dir / "s1" / "1.pgm").read_bytes()
    assert client.post(IMAGES, files={"file": ("1.pgm", face)}, data={"k": "2"}).status_code == 200
    assert client.post(TEXTS, json={"texts": ["a dog", "a tree"], "k": 2}).status_code == 200
    assert client.post(TEXTS, json={"text": ""}).status_code == 422
    after = samples(client)

    def grew(name: str, by: float = 1.0, **labels: str) -> bool:
        return value(after, name, **labels) - value(before, name, **labels) >= by

    route = "/v1/collections/{name}/search"  # the template: one series for every collection
    assert grew("arcsearch_requests_total", by=2, method="POST", route=route, status="200")
    assert grew("arcsearch_requests_total", method="POST", route=route, status="422")
    assert grew("arcsearch_request_duration_seconds_count", by=3, method="POST", route=route)
    assert grew("arcsearch_stage_duration_seconds_count", stage="decode", collection="images")
    for stage in ("embed", "search"):
        assert grew("arcsearch_stage_duration_seconds_count", stage=stage, collection="texts")
    assert grew("arcsearch_batch_size_count", collection="texts")
    assert grew("arcsearch_batch_size_sum", by=2, collection="texts")  # both texts in one forward pass
    assert value(after, "arcsearch_index_items", collection="images") == 400
    assert ("arcsearch_batch_queue_depth", frozenset({("collection", "texts")})) in after
    assert ("arcsearch_jobs", frozenset({("state", "running")})) in after
    client.get("/v1/no/such/route")
    assert value(samples(client), "arcsearch_requests_total", method="GET", route="<unmatched>", status="404") >= 1


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "req-42.a_b"})
    assert given.headers["x-request-id"] == "req-42.a_b"
    fresh = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    unsafe = client.get("/healthz", headers={"X-Request-ID": "no spaces\tor tabs"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe)
    assert client.post(TEXTS, json={"k": "x"}).headers["x-request-id"]  # errors carry it too


def test_log_records_carry_the_request_id(service_data: ServiceData, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(service_settings(service_data))

    @app.get("/log-something")
    def log_something() -> dict[str, str]:
        logging.getLogger("tests.service.probe").info("inside the handler")
        return {}

    with caplog.at_level(logging.INFO, logger="tests.service.probe"):
        local_client(app).get("/log-something", headers={"X-Request-ID": "trace-me"})
    records = [r for r in caplog.records if r.getMessage() == "inside the handler"]
    assert records and all(getattr(r, "request_id", None) == "trace-me" for r in records)
    outside = logging.getLogRecordFactory()("x", logging.INFO, "f", 1, "m", None, None)
    assert outside.request_id == "-"  # type: ignore[attr-defined]


def test_every_request_logs_one_access_line_with_its_id(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="arcsearch.access"):
        ok = client.get("/v1/collections")
        missing = client.get("/v1/no/such/route%0Aforged", headers={"X-Request-ID": "mine-1"})
    for response, line in ((ok, "method=GET path=/v1/collections status=200 duration_ms="),
                           (missing, "method=GET path=/v1/no/such/route%0Aforged status=422 duration_ms=")):
        request_id = response.headers["x-request-id"]
        records = [r for r in caplog.records if r.name == "arcsearch.access" and f"request_id={request_id}" in
                   r.getMessage()]
        assert len(records) == 1, [r.getMessage() for r in caplog.records]
        assert line in records[0].getMessage() and records[0].request_id == request_id  # type: ignore[attr-defined]
    assert missing.headers["x-request-id"] == "mine-1"
