"""Items by external id (get, upsert, delete without a rebuild), search by item id or raw vector, filters."""

from __future__ import annotations

import base64
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from arcsearch.index.collections import index_collection
from arcsearch.service.app import create_app
from tests import bundles
from tests.service.helpers import ServiceData, assert_error, local_client, service_settings, wait_ready

BASE = "/v1/collections/scratch2"


def all_items(client: TestClient) -> list[dict]:
    return client.post(f"{BASE}/search", json={"text": "anything", "k": 100}).json()["queries"][0]["hits"]


def test_upsert_get_delete_survive_a_restart(client: TestClient, service_data: ServiceData) -> None:
    size = len(all_items(client))
    item = {"text": "a small striped cat", "label": "cat", "metadata": {"n": 1}}
    put = client.put(f"{BASE}/items/new/one", json=item)
    assert put.status_code == 200, put.text
    assert put.json() | {"index_supports_delete": True} == {"collection": "scratch2", "id": "new/one",
                                                             "status": "created", "size": size + 1,
                                                             "index_supports_delete": True}
    got = client.get(f"{BASE}/items/new/one").json()
    assert (got["label"], got["metadata"]) == ("cat", {"n": 1, "text": "a small striped cat"})
    hits = client.post(f"{BASE}/search", json={"text": "a small striped cat", "k": 1})
    assert hits.json()["queries"][0]["hits"][0]["id"] == "new/one"
    again = client.put(f"{BASE}/items/new/one", json={"text": "a large dog", "label": "dog"}).json()
    assert (again["status"], again["size"]) == ("replaced", size + 1)
    client.put(f"{BASE}/items/gone", json={"text": "to be deleted", "label": "x"})
    assert client.delete(f"{BASE}/items/gone").json()["status"] == "deleted"
    assert_error(client.get(f"{BASE}/items/gone"), 404, "item_not_found")
    assert_error(client.delete(f"{BASE}/items/gone"), 404, "item_not_found")

    with local_client(create_app(service_settings(service_data))) as restarted:  # the change log is replayed
        wait_ready(restarted)
        assert restarted.get(f"{BASE}/items/new/one").json()["label"] == "dog"
        assert_error(restarted.get(f"{BASE}/items/gone"), 404, "item_not_found")
        assert len(all_items(restarted)) == size + 1
        assert restarted.delete(f"{BASE}/items/new/one").status_code == 200
    assert_error(client.put(f"{BASE}/items/x", json={"image_base64": "aGk="}), 400, "wrong_modality")
    assert_error(client.put(f"{BASE}/items/x", json={"text": "a", "image_base64": "aGk="}), 422, "validation_error")
    assert_error(client.get("/v1/collections/nope/items/x"), 404, "collection_not_found")


def test_filters_come_back_with_k_results_and_min_score_holds(client: TestClient, service_data: ServiceData) -> None:
    labels = Counter(hit["label"] for hit in all_items(client))
    label, count = labels.most_common(1)[0]
    assert count >= 2
    body = {"text": "something unrelated to it all", "k": count, "filter": {"label": label}}
    hits = client.post(f"{BASE}/search", json=body).json()["queries"][0]["hits"]
    assert len(hits) == count and {h["label"] for h in hits} == {label}
    body = {"text": "anything", "k": 50, "min_score": 0.3}
    assert all(h["score"] >= 0.3 for h in client.post(f"{BASE}/search", json=body).json()["queries"][0]["hits"])
    face = (service_data.faces_dir / "s1" / "1.pgm").read_bytes()
    images = client.post("/v1/collections/images/search", files={"file": ("1.pgm", face)},
                         data={"k": "10", "label": "s5", "min_score": "-1"}).json()["queries"][0]["hits"]
    assert len(images) == 10 and {h["label"] for h in images} == {"s5"}  # all 10 of s5, though s1 is nearer
    bad = {"text": "x", "filter": {"metadata": {"bad key!": 1}}}
    assert_error(client.post(f"{BASE}/search", json=bad), 422, "validation_error")


def test_search_by_item_id_and_by_raw_vector(client: TestClient) -> None:
    first = all_items(client)[0]["id"]
    hits = client.post(f"{BASE}/search", json={"item_id": first, "k": 5}).json()["results"]
    assert len(hits) == 5 and first not in {h["id"] for h in hits}
    vector = np.random.default_rng(0).normal(size=384).tolist()
    by_vector = client.post(f"{BASE}/search", json={"vector": vector, "k": 3})
    assert by_vector.status_code == 200 and len(by_vector.json()["results"]) == 3
    assert_error(client.post(f"{BASE}/search", json={"vector": [1.0, 2.0]}), 400, "wrong_dimension")  # the collection's
    zero = client.post(f"{BASE}/search", json={"vectors": [[0.0] * 384], "k": 2}).json()["queries"][0]["hits"]
    assert [hit["score"] for hit in zero] == [0.0, 0.0]  # a zero vector is equally far from everything
    assert_error(client.post(f"{BASE}/search", json={"vector": [1e39] * 384}), 422, "validation_error")
    assert_error(client.post(f"{BASE}/search", json={"item_id": "nope"}), 404, "item_not_found")
    assert_error(client.post(f"{BASE}/search", json={"item_id": "a", "vector": [1.0]}), 422, "validation_error")


def test_hnsw_cannot_delete_so_it_says_so_and_rebuilds_in_the_background(service_data: ServiceData,
                                                                         tmp_path: Path) -> None:
    rows = [{**row, "id": f"h-{i}"} for i, row in enumerate(service_data.indexed_texts[:20])]
    source = bundles.write_jsonl(tmp_path / "data" / "h.jsonl", rows)
    index_collection(tmp_path / "collections", "hnsw", service_data.text_embedder, source, factory="HNSW16",
                     device="cpu")
    settings = service_settings(service_data, collections_dir=tmp_path / "collections", data_root=tmp_path / "data")
    with local_client(create_app(settings)) as hnsw:
        wait_ready(hnsw)
        deleted = hnsw.delete("/v1/collections/hnsw/items/h-3").json()
        assert (deleted["status"], deleted["index_supports_delete"], deleted["size"]) == ("deleted", False, 19)
        store = hnsw.app.state.registry.get("hnsw").snapshot.store  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while store.tombstones or store.index.ntotal != 19:
            assert time.monotonic() < deadline, "the background rebuild did not run"
            time.sleep(0.05)
        body = {"text": rows[3]["text"], "k": 20}
        hits = hnsw.post("/v1/collections/hnsw/search", json=body).json()["queries"][0]["hits"]
        assert len(hits) == 19 and "h-3" not in {h["id"] for h in hits}


def test_upsert_and_inline_reindex_keep_the_upload_and_text_limits(client: TestClient, service_data: ServiceData,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    settings = client.app.state.settings  # type: ignore[attr-defined]
    monkeypatch.setattr(settings, "max_upload_bytes", 20_000)
    monkeypatch.setattr(settings, "max_text_chars", 50)
    face = (service_data.faces_dir / "s1" / "1.pgm").read_bytes()  # 10,318 bytes: within the limit
    large = base64.b64encode(face * 3).decode()  # 30,954 bytes: over it
    error = assert_error(client.put("/v1/collections/scratch-images/items/big", json={"image_base64": large}),
                         413, "payload_too_large")
    assert error["details"] == {"field": "image_base64", "limit_bytes": 20_000} and "image_base64" in error["message"]
    error = assert_error(client.put(f"{BASE}/items/long", json={"text": "x" * 51}), 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "text"] and "50" in error["message"]
    items = [{"id": "a", "image_base64": base64.b64encode(face).decode()}, {"id": "b", "image_base64": large}]
    error = assert_error(client.post("/v1/reindex", json={"collection": "scratch-images", "items": items}),
                         413, "payload_too_large")
    assert error["details"] == {"field": "items.1.image_base64", "limit_bytes": 20_000}
    texts = [{"id": "a", "text": "short", "label": "x"}, {"id": "b", "text": "y" * 51, "label": "x"}]
    error = assert_error(client.post("/v1/reindex", json={"collection": "scratch2", "items": texts}),
                         422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "items", "1", "text"]
    assert_error(client.get("/v1/collections/scratch-images/items/big"), 404, "item_not_found")  # nothing stored
