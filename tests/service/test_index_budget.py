"""A collection whose index is chosen by budget: created and re-indexed with target_recall / max_memory, 422 for
a malformed budget, and the chosen index's facts (search parameters, measured recall) in GET /v1/collections."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from arcsearch.service.app import create_app
from tests.service.helpers import ServiceData, assert_error, local_client, service_settings, wait_job, wait_ready

EMBEDDER = "embedders/text"


@pytest.fixture(scope="module")
def budget_client(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("budget")
    data_root = root / "data"
    shutil.copytree(service_data.text_embedder, data_root / EMBEDDER)
    shutil.copy(service_data.data_root / "texts.jsonl", data_root / "texts.jsonl")
    settings = service_settings(service_data, collections_dir=root / "collections", data_root=data_root)
    with local_client(create_app(settings)) as client:
        wait_ready(client)
        yield client


def listed(client: TestClient) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}


@pytest.mark.parametrize("budget", [{"target_recall": 0}, {"target_recall": 1.5}, {"target_recall": "high"},
                                    {"max_memory": "lots"}, {"max_memory": 0}, {"max_memory": "-1GB"},
                                    {"max_memory": "2 GiBs"}])
def test_a_malformed_budget_is_a_422_on_creation_and_on_reindex(budget_client: TestClient,
                                                                 budget: dict[str, Any]) -> None:
    created = budget_client.post("/v1/collections", json={"name": "bad-budget", "embedder": EMBEDDER, **budget})
    assert_error(created, 422, "validation_error")
    assert "bad-budget" not in listed(budget_client)
    reindex = budget_client.post("/v1/reindex", json={"collection": "any", "source": "texts.jsonl", **budget})
    assert_error(reindex, 422, "validation_error")


def test_a_budget_chooses_and_tunes_the_index_and_the_listing_shows_what_it_measured(
        budget_client: TestClient) -> None:
    created = budget_client.post("/v1/collections", json={"name": "tuned", "embedder": EMBEDDER,
                                                          "target_recall": 0.9, "max_memory": "64MiB"})
    assert created.status_code == 201, created.text
    job = wait_job(budget_client, budget_client.post("/v1/reindex", json={"collection": "tuned",
                                                                        "source": "texts.jsonl"}).json()["job_id"])
    assert job["status"] == "succeeded", job
    summary = listed(budget_client)["tuned"]
    assert summary["index_type"] == "Flat"  # 100 items: exact search is the chooser's answer
    facts = summary["index"]
    assert (facts["target_recall"], facts["max_memory_bytes"], facts["recall_at_10"]) == (0.9, 64 * 2 ** 20, 1.0)
    assert facts["memory_mapped"] is False and facts["query_ms_p50"] > 0


def test_a_reindex_with_a_budget_replaces_an_explicit_factory_and_a_factory_wins_at_creation(
        budget_client: TestClient) -> None:
    created = budget_client.post("/v1/collections", json={"name": "hnsw", "embedder": EMBEDDER,
                                                          "index_factory": "HNSW16", "target_recall": 0.99})
    assert created.status_code == 201 and created.json()["index_type"] == "HNSW16", created.text
    assert created.json()["index"]["recall_at_10"] is None  # no budget was recorded: the factory won
    job = wait_job(budget_client, budget_client.post("/v1/reindex", json={
        "collection": "hnsw", "source": "texts.jsonl", "target_recall": 0.97}).json()["job_id"])
    assert job["status"] == "succeeded", job
    summary = listed(budget_client)["hnsw"]
    assert summary["index_type"] == "Flat" and summary["index"]["target_recall"] == 0.97
    job = wait_job(budget_client, budget_client.post("/v1/reindex", json={
        "collection": "hnsw", "source": "texts.jsonl"}).json()["job_id"])  # the budget carries over
    assert listed(budget_client)["hnsw"]["index"]["target_recall"] == 0.97, job
