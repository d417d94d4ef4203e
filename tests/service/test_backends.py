"""Collection behaviour on both backends (each test runs as [faiss] and as [milvus], the ``backend`` fixture):
search with label / metadata filters and min_score, items by id, re-index jobs, a bounded fuzz of the search
route. The app has its own collections folder; collections are created and filled through HTTP."""

from __future__ import annotations

import random
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from arcsearch.service.app import create_app
from tests import bundles
from tests.service.helpers import ServiceData, assert_error, local_client, service_settings, wait_job, wait_ready

EMBEDDER = "embedders/text"
TAGS = ['quote " and \\ slash', "é 字 🙂", "x] or true or [x", "plain"]
NUM_ITEMS = 60


def corpus_rows(service_data: ServiceData) -> list[dict[str, Any]]:
    """NUM_ITEMS texts with labels and metadata of every filterable kind (numbers, booleans, tricky strings)."""
    return [{"id": f"t{i:03d}", "text": row["text"], "label": row["label"], "n": i, "even": i % 2 == 0,
             "tag": TAGS[i % len(TAGS)]} for i, row in enumerate(service_data.indexed_texts[:NUM_ITEMS])]


@pytest.fixture(scope="module")
def served(service_data: ServiceData, backend_env: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """(client, collection name): an app of ``backend`` over a new collection of NUM_ITEMS texts."""
    root = tmp_path_factory.mktemp("backends")
    data_root = root / "data"
    shutil.copytree(service_data.text_embedder, data_root / EMBEDDER)
    bundles.write_jsonl(data_root / "corpus.jsonl", corpus_rows(service_data))
    settings = service_settings(service_data, collections_dir=root / "collections", data_root=data_root,
                                **backend_env)
    name = f"notes-{secrets.token_hex(3)}"
    with local_client(create_app(settings)) as client:
        wait_ready(client)
        created = client.post("/v1/collections", json={"name": name, "embedder": EMBEDDER})
        assert created.status_code == 201, created.text
        job = wait_job(client, client.post("/v1/reindex", json={"collection": name, "source": "corpus.jsonl"})
                       .json()["job_id"])
        assert job["status"] == "succeeded" and job["num_items"] == NUM_ITEMS, job
        yield client, name
        assert client.delete(f"/v1/collections/{name}").status_code == 204


def search(client: TestClient, name: str, **body: Any) -> list[dict[str, Any]]:
    response = client.post(f"/v1/collections/{name}/search", json={"text": "an animal that swims", **body})
    assert response.status_code == 200, response.text
    return response.json()["queries"][0]["hits"]


def matches(hit: dict[str, Any], search_filter: dict[str, Any]) -> bool:
    metadata = search_filter.get("metadata", {})
    return (search_filter.get("label") in (None, hit["label"])
            and all(key in hit["metadata"] and hit["metadata"][key] == value for key, value in metadata.items()))


def test_the_collection_is_listed_with_its_backend_size(served: tuple[TestClient, str], backend: str) -> None:
    client, name = served
    listed = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}
    assert (listed[name]["status"], listed[name]["size"], listed[name]["dim"]) == ("ready", NUM_ITEMS, 384)
    assert listed[name]["index_type"].startswith("milvus") == (backend == "milvus")


@pytest.mark.parametrize("search_filter", [
    {"label": None}, {"metadata": {"even": True}}, {"metadata": {"n": 7}}, {"metadata": {"tag": TAGS[0]}},
    {"metadata": {"tag": TAGS[2], "even": True}}, {"metadata": {"nope": 1}}])
def test_filters_pick_from_the_exact_ranking(served: tuple[TestClient, str], search_filter: dict[str, Any]) -> None:
    client, name = served
    ranking = search(client, name, k=100)
    assert len(ranking) == NUM_ITEMS and [h["score"] for h in ranking] == sorted((h["score"] for h in ranking),
                                                                                  reverse=True)
    if "label" in search_filter:
        search_filter = {"label": ranking[-1]["label"]}
    want = [h["id"] for h in ranking if matches(h, search_filter)][:5]
    assert [h["id"] for h in search(client, name, k=5, filter=search_filter)] == want


def test_min_score_drops_the_weaker_hits(served: tuple[TestClient, str]) -> None:
    client, name = served
    ranking = search(client, name, k=20)
    floor = ranking[9]["score"]
    kept = search(client, name, k=20, min_score=floor)
    assert [h["id"] for h in kept] == [h["id"] for h in ranking if h["score"] >= floor]
    assert search(client, name, k=20, min_score=1.0) == []  # no item is the query itself


def test_items_are_read_upserted_and_deleted_by_id(served: tuple[TestClient, str]) -> None:
    client, name = served
    base = f"/v1/collections/{name}/items"
    assert client.get(f"{base}/t003").json()["metadata"]["n"] == 3
    put = client.put(f"{base}/new/one", json={"text": "a small striped cat", "label": "cat", "metadata": {"k": 1}})
    assert put.status_code == 200 and (put.json()["status"], put.json()["size"]) == ("created", NUM_ITEMS + 1)
    assert search(client, name, text="a small striped cat", k=1)[0]["id"] == "new/one"
    again = client.put(f"{base}/new/one", json={"text": "a large dog", "label": "dog"}).json()
    assert (again["status"], again["size"]) == ("replaced", NUM_ITEMS + 1)
    assert client.get(f"{base}/new/one").json()["label"] == "dog"
    by_id = client.post(f"/v1/collections/{name}/search", json={"item_id": "t003", "k": 3}).json()
    assert "t003" not in [h["id"] for h in by_id["queries"][0]["hits"]] and len(by_id["queries"][0]["hits"]) == 3
    assert client.delete(f"{base}/new/one").json()["status"] == "deleted"
    assert_error(client.get(f"{base}/new/one"), 404, "item_not_found")
    assert_error(client.delete(f"{base}/new/one"), 404, "item_not_found")
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get(base, params={"limit": 25} | ({"cursor": cursor} if cursor else {})).json()
        seen += [item["id"] for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == [f"t{i:03d}" for i in range(NUM_ITEMS)]


def test_a_reindex_swaps_all_items_and_keeps_changes_made_meanwhile(served: tuple[TestClient, str],
                                                                    service_data: ServiceData) -> None:
    client, name = served
    before = client.get("/v1/collections").json()["collections"]
    old_version = next(c for c in before if c["name"] == name)["version"]
    rows = service_data.indexed_texts
    items = [{"id": f"r{i}", "text": rows[i]["text"], "label": rows[i]["label"]} for i in range(30)]
    job_id = client.post("/v1/reindex", json={"collection": name, "items": items}).json()["job_id"]
    put = client.put(f"/v1/collections/{name}/items/during", json={"text": "made while re-indexing", "label": "x"})
    assert put.status_code == 200, put.text
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    ids = {h["id"] for h in search(client, name, k=100)}
    assert ids == {f"r{i}" for i in range(30)} | {"during"}
    listed = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}
    assert listed[name]["version"] not in (None, old_version) and listed[name]["size"] == 31
    source = client.post("/v1/reindex", json={"collection": name, "source": "corpus.jsonl"}).json()
    assert wait_job(client, source["job_id"])["num_items"] == NUM_ITEMS  # as the other tests found it


def test_a_bounded_fuzz_of_the_search_route_never_gets_a_500(served: tuple[TestClient, str]) -> None:
    client, name = served
    rng = random.Random(7)
    values: list[Any] = [None, True, False, 0, -1, 2**63, 1e308, 3.5, "", "\x00", "'", '"', "\\", "é", TAGS[0],
                         TAGS[2], [], {}, ["x"], "a" * 300]
    keys = ["n", "even", "tag", "nope", "", "a b", "x" * 70, "$where", "text"]
    for _ in range(80):
        body: dict[str, Any] = {"text": rng.choice(["a dog", "é 字", "x" * 50]), "k": rng.choice([1, 5, 100, 0, 101])}
        if rng.random() < 0.7:
            body["filter"] = {"metadata": {rng.choice(keys): rng.choice(values) for _ in range(rng.randint(1, 3))}}
            if rng.random() < 0.3:
                body["filter"]["label"] = rng.choice(values)
        if rng.random() < 0.3:
            body["min_score"] = rng.choice([-1.0, 0.0, 0.3, 2.0, "x", None])
        response = client.post(f"/v1/collections/{name}/search", json=body)
        assert response.status_code < 500, (body, response.text[:300])
        if response.status_code == 200:
            hits = response.json()["queries"][0]["hits"]
            assert len(hits) <= body["k"] and all(matches(h, body.get("filter", {})) for h in hits), body
        else:
            assert set(response.json()) == {"error"}, response.text[:300]
