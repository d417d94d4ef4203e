"""Image search under hostile load: huge-but-tiny PNGs (6300 x 6300 pixels in ~150 kB) are decoded reduced,
a bounded number at once, and whatever does not fit is shed with 503 instead of growing memory."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from arcsearch.service.core.batching import MicroBatcher, PendingQuery
from arcsearch.service.core.querying import QueryAnswer
from arcsearch.service.settings import Settings
from arcsearch.service.uploads import image_memory_bound_bytes
from tests.service.helpers import ServiceData, assert_error, live_server, served_copy

BIG_PX = 6300
BURST_REQUESTS, FILES_PER_REQUEST = 8, 16
SLACK_BYTES = 256 * 1024 * 1024  # allocator arenas, thread stacks, request parsing, responses
LIMITS = {"max_upload_bytes": "400000", "max_request_bytes": "8000000", "max_concurrent_decodes": "2",
          "max_images_in_flight": "32", "max_request_pixels": str(FILES_PER_REQUEST * 40_000_000)}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def big_png(service_data: ServiceData) -> bytes:
    """A 6300 x 6300 RGB PNG of ~150 kB (a face on a flat background): ~160 MB once decoded by Pillow."""
    canvas = Image.new("RGB", (BIG_PX, BIG_PX), (90, 120, 150))
    canvas.paste(Image.open(service_data.faces_dir / "s1" / "1.pgm").convert("RGB"), (3000, 3000))
    return png(canvas)


def memory_kib(pid: int, field: str) -> int:
    """A field of /proc/<pid>/status in KiB, e.g. VmHWM (the peak resident set) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def post_files(http: httpx.Client, parts: list[tuple[str, bytes]], **form: Any) -> httpx.Response:
    return http.post("/v1/collections/images/search", files=[("file", part) for part in parts],
                     data={key: str(value) for key, value in form.items()})


def test_a_burst_of_huge_pngs_stays_under_the_memory_bound(service_data: ServiceData, big_png: bytes,
                                                           tmp_path: Path) -> None:
    face = (service_data.faces_dir / "s1" / "1.pgm").read_bytes()
    bound_above_baseline = image_memory_bound_bytes(Settings(**LIMITS), target_px=(112, 112)) + SLACK_BYTES
    collections = served_copy(service_data.collections_dir, tmp_path / "collections")
    with live_server(collections, service_data.data_root, tmp_path / "server.log",
                     **LIMITS) as (url, proc), httpx.Client(base_url=url, timeout=300) as http:
        with ThreadPoolExecutor(2) as pool:  # warm up: a full batch of small faces through the encoder
            warm = list(pool.map(lambda _: post_files(http, [("f.pgm", face)] * 16, k=1), range(2)))
        assert [r.status_code for r in warm] == [200, 200], warm[0].text
        baseline = memory_kib(proc.pid, "VmHWM") * 1024
        parts = [(f"{i}.png", big_png) for i in range(FILES_PER_REQUEST)]
        with ThreadPoolExecutor(BURST_REQUESTS) as pool:
            burst = list(pool.map(lambda _: post_files(http, parts, k=1), range(BURST_REQUESTS)))
        peak = memory_kib(proc.pid, "VmHWM") * 1024
        statuses = sorted(r.status_code for r in burst)
        assert set(statuses) <= {200, 413, 422, 503} and 200 in statuses, [r.text[:300] for r in burst]
        for response in burst:
            if response.status_code == 503:
                assert_error(response, 503, "overloaded")
                assert int(response.headers["retry-after"]) >= 1
            elif response.status_code == 200:
                assert len(response.json()["queries"]) == FILES_PER_REQUEST
        assert peak - baseline <= bound_above_baseline, (
            f"peak RSS {peak / 2**20:.0f} MiB = baseline {baseline / 2**20:.0f} MiB + "
            f"{(peak - baseline) / 2**20:.0f} MiB > bound {bound_above_baseline / 2**20:.0f} MiB; statuses {statuses}")
        after = post_files(http, [("s1-1.pgm", face)], k=1)
        assert after.status_code == 200 and after.json()["queries"][0]["hits"][0]["id"] == "s1/1.pgm"
        print(f"burst statuses {statuses}; peak {peak / 2**20:.0f} MiB, baseline {baseline / 2**20:.0f} MiB, "
              f"bound above baseline {bound_above_baseline / 2**20:.0f} MiB")


def test_pixel_limits_per_image_and_per_request_get_413(client: TestClient, service_data: ServiceData,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = client.app.state.settings  # type: ignore[attr-defined]
    face = (service_data.faces_dir / "s1" / "1.pgm").read_bytes()  # 92 x 112 = 10,304 pixels
    monkeypatch.setattr(settings, "max_request_pixels", 3 * 10_304)
    assert post_files(client, [("a.pgm", face)] * 3, k=1).status_code == 200
    error = assert_error(post_files(client, [("a.pgm", face)] * 4, k=1), 413, "payload_too_large")
    assert error["details"] == {"limit_pixels": 3 * 10_304, "index": 3, "filename": "a.pgm"}
    monkeypatch.setattr(settings, "max_image_pixels", 10_000)
    error = assert_error(post_files(client, [("small.pgm", face[:0] + png(Image.new("L", (10, 10)))),
                                             ("a.pgm", face)]), 413, "payload_too_large")
    assert (error["details"]["index"], error["details"]["filename"]) == (1, "a.pgm")
    assert "92x112" in error["details"]["reason"] and "file 1" in error["message"]


def test_images_are_reduced_before_they_are_queued(client: TestClient, big_png: bytes) -> None:
    collection = client.app.state.registry.get("images")  # type: ignore[attr-defined]
    sizes: list[tuple[int, int]] = []

    def record(batch: list[PendingQuery]) -> list[QueryAnswer]:  # a fake forward pass: notes what was queued
        sizes.extend(image.size for query in batch for image in query.inputs)
        return [QueryAnswer("v", [[] for _ in query.inputs]) for query in batch]

    live, collection.batcher = collection.batcher, MicroBatcher("record", record, max_batch=32, max_wait_ms=0)
    try:
        assert post_files(client, [("big.png", big_png)] * 2).status_code == 200
    finally:
        collection.batcher.close()
        collection.batcher = live
    assert len(sizes) == 2 and all(224 <= side < 448 for size in sizes for side in size), sizes


def test_a_large_photo_of_a_face_still_finds_it(client: TestClient, service_data: ServiceData) -> None:
    face = Image.open(service_data.faces_dir / "s7" / "4.pgm")
    large = png(face.resize((face.width * 20, face.height * 20), Image.Resampling.BICUBIC))  # 1840 x 2240
    hits = post_files(client, [("large.png", large)], k=1).json()["queries"][0]["hits"]
    assert hits[0]["id"] == "s7/4.pgm" and hits[0]["score"] > 0.95, hits
