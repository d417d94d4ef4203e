"""POST /v1/collections/images/search with several ``file`` parts, over HTTP (conftest.server): one forward pass,
in order."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.helpers import MAX_REQUEST_BYTES, ServiceData, assert_error

Part = tuple[str, bytes]


def face(service_data: ServiceData, person: str, number: int) -> Part:
    return f"{person}-{number}.pgm", (service_data.faces_dir / person / f"{number}.pgm").read_bytes()


def post_images(http: httpx.Client, parts: list[Part], **form: Any) -> httpx.Response:
    """One request with a ``file`` part per entry of ``parts`` (as ``curl -F file=@a -F file=@b`` sends them)."""
    return http.post("/v1/collections/images/search", files=[("file", (name, data, "image/x-portable-graymap"))
                                                             for name, data in parts],
                     data={key: str(value) for key, value in form.items()})


def image_batches(http: httpx.Client) -> tuple[float, float]:
    """(forward passes, inputs embedded) of the ``images`` collection so far, from GET /metrics."""
    found = {s.name: s.value for family in text_string_to_metric_families(http.get("/metrics").text)
             for s in family.samples if s.name.startswith("arcsearch_batch_size_")
             and s.labels.get("collection") == "images"}
    return found["arcsearch_batch_size_count"], found["arcsearch_batch_size_sum"]


def assert_still_serving(http: httpx.Client, service_data: ServiceData) -> None:
    response = post_images(http, [face(service_data, "s1", 1)], k=1)
    assert response.status_code == 200, response.text
    assert response.json()["queries"][0]["hits"][0]["id"] == "s1/1.pgm"


def ids_and_scores(results: list[dict[str, Any]]) -> tuple[list[str], list[float]]:
    return [hit["id"] for hit in results], [hit["score"] for hit in results]


def test_a_batch_answers_each_image_as_single_requests_do(http: httpx.Client, service_data: ServiceData) -> None:
    a, b = face(service_data, "s31", 1), face(service_data, "s36", 6)
    singles = []
    for part in (a, b):
        body = post_images(http, [part], k=5).json()
        (query,) = body["queries"]
        assert query["filename"] == part[0] and "results" not in body  # each query's hits once
        singles.append(query["hits"])
    passes, inputs = image_batches(http)
    response = post_images(http, [a, b], k=5)
    assert response.status_code == 200, response.text
    assert image_batches(http) == (passes + 1, inputs + 2)  # both images in one forward pass
    body = response.json()
    assert body["collection"] == "images" and body["version"]
    assert [q["filename"] for q in body["queries"]] == [a[0], b[0]]
    for query, single in zip(body["queries"], singles, strict=True):
        ids, scores = ids_and_scores(query["hits"])
        assert ids == ids_and_scores(single)[0]
        assert scores == pytest.approx(ids_and_scores(single)[1], abs=1e-4)
    assert [q["hits"][0]["id"] for q in body["queries"]] == ["s31/1.pgm", "s36/6.pgm"]


def test_the_order_of_the_files_is_kept(http: httpx.Client, service_data: ServiceData) -> None:
    parts = [face(service_data, person, number) for person, number in (("s36", 6), ("s2", 3), ("s31", 1))]
    body = post_images(http, parts, k=1, min_score="0.5").json()
    assert [q["filename"] for q in body["queries"]] == [name for name, _ in parts]
    assert [q["hits"][0]["id"] for q in body["queries"]] == ["s36/6.pgm", "s2/3.pgm", "s31/1.pgm"]


def test_one_more_file_than_allowed_gets_422(http: httpx.Client, service_data: ServiceData) -> None:
    error = assert_error(post_images(http, [face(service_data, "s1", 1)] * 17), 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "file"] and "at most 16 files" in error["message"]
    assert post_images(http, [face(service_data, "s1", 1)] * 16, k=1).status_code == 200
    assert_still_serving(http, service_data)


def test_a_corrupt_file_among_good_ones_gets_415_naming_it(http: httpx.Client, service_data: ServiceData) -> None:
    parts = [face(service_data, "s1", 1), ("junk.jpg", b"\xff\xd8\xff not really a jpeg"), face(service_data, "s2", 1)]
    error = assert_error(post_images(http, parts), 415, "unsupported_media_type")
    assert error["details"]["index"] == 1 and error["details"]["filename"] == "junk.jpg"
    assert "file 1" in error["message"] and "JPEG" in error["details"]["accepted_formats"]
    error = assert_error(post_images(http, [face(service_data, "s1", 1), ("empty.png", b"")]), 422, "empty_upload")
    assert error["details"] == {"index": 1, "filename": "empty.png"}
    assert_still_serving(http, service_data)


@pytest.mark.parametrize("file_bytes", [170_000, 190_000], ids=["counted-by-the-handler", "refused-by-length"])
def test_files_over_the_total_limit_get_413(http: httpx.Client, service_data: ServiceData, file_bytes: int) -> None:
    """Six files each under the per-file limit but over the request's total: the handler adds the sizes up
    (170 kB each, within the body limit's multipart allowance) or the body limit refuses the length (190 kB)."""
    parts = [(f"{i}.pgm", b"\0" * file_bytes) for i in range(6)]
    error = assert_error(post_images(http, parts), 413, "payload_too_large")
    if file_bytes == 170_000:
        assert error["details"] == {"limit_bytes": MAX_REQUEST_BYTES, "index": 5, "filename": "5.pgm"}
    else:
        assert error["details"]["limit_bytes"] > MAX_REQUEST_BYTES
    assert_still_serving(http, service_data)
