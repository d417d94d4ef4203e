"""Re-index over HTTP from manifests under the data root: image paths with ids and metadata (CSV / JSONL /
Parquet), texts in Parquet, labels optional; a bad manifest gives a clear error and changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.bundles import write_table
from tests.service.helpers import ServiceData, assert_error, wait_job


def items_of(client: TestClient, name: str) -> dict[str, dict[str, Any]]:
    page = client.get(f"/v1/collections/{name}/items", params={"limit": 100}).json()
    return {item["id"]: item for item in page["items"]}


def version_of(client: TestClient, name: str) -> str:
    return {c["name"]: c["version"] for c in client.get("/v1/collections").json()["collections"]}[name]


def reindex(client: TestClient, name: str, source: str) -> dict[str, Any]:
    accepted = client.post("/v1/reindex", json={"collection": name, "source": source})
    assert accepted.status_code == 202, accepted.text
    return wait_job(client, accepted.json()["job_id"])


@pytest.fixture()
def manifest_dir(service_data: ServiceData) -> Path:
    """``<data root>/manifests/img/`` with three faces in it (relative manifest paths start there)."""
    folder = service_data.data_root / "manifests"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "img").mkdir(parents=True)
    for n in (1, 2, 3):
        shutil.copy(service_data.faces_dir / "s5" / f"{n}.pgm", folder / "img" / f"face{n}.pgm")
    return folder


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_image_manifest_with_ids_and_metadata_and_no_labels(client: TestClient, manifest_dir: Path,
                                                            suffix: str) -> None:
    rows = [{"path": f"img/face{n}.pgm", "id": f"sku-{n}", "shop": f"shop{n % 2}"} for n in (1, 2, 3)]
    rows[0]["label"] = "s5"
    write_table(manifest_dir / f"images{suffix}", rows)
    job = reindex(client, "scratch-images", f"manifests/images{suffix}")
    assert job["status"] == "succeeded" and job["num_items"] == 3, job
    assert job["progress"]["resumed"] == 0 and job["progress"]["eta_s"] is None
    items = items_of(client, "scratch-images")
    assert sorted(items) == ["sku-1", "sku-2", "sku-3"]
    assert (items["sku-1"]["label"], items["sku-2"]["label"]) == ("s5", "")
    assert items["sku-2"]["metadata"]["shop"] == "shop0" and items["sku-2"]["source"] == "img/face2.pgm"


def test_text_parquet_without_labels(client: TestClient, service_data: ServiceData) -> None:
    rows = [{"id": f"p{i}", "text": row["text"], "topic": f"t{i % 3}"}
            for i, row in enumerate(service_data.indexed_texts[:12])]
    write_table(service_data.data_root / "manifests-texts" / "texts.parquet", rows)
    job = reindex(client, "scratch2", "manifests-texts/texts.parquet")
    assert job["status"] == "succeeded" and job["num_items"] == 12, job
    items = items_of(client, "scratch2")
    assert sorted(items) == sorted(f"p{i}" for i in range(12))
    assert items["p4"]["label"] == "" and items["p4"]["metadata"]["topic"] == "t1"


@pytest.mark.parametrize(("name", "table", "column"), [
    ("scratch-images", "no-path.csv", "path"), ("scratch2", "no-text.parquet", "text")])
def test_a_manifest_without_its_column_is_refused_at_once(client: TestClient, manifest_dir: Path, name: str,
                                                           table: str, column: str) -> None:
    write_table(manifest_dir / table, [{"file": "img/face1.pgm", "body": "x"}])
    error = assert_error(client.post("/v1/reindex", json={"collection": name, "source": f"manifests/{table}"}),
                         400, "invalid_source")
    assert f"no {column!r} column" in error["message"] and str(manifest_dir) not in error["message"]


@pytest.mark.parametrize(("rows", "reason"), [
    ([{"path": "img/face1.pgm"}, {"path": "img/missing.pgm"}], "row 2: image file 'img/missing.pgm' does not exist"),
    ([{"path": "img/face1.pgm", "id": "a"}, {"path": "img/face2.pgm", "id": "a"}], "row 2: id 'a' is already used"),
    ([{"path": "../../outside/secret.jsonl"}], "row 1: image file '../../outside/secret.jsonl' lies outside"),
])
def test_a_bad_image_manifest_fails_the_job_and_changes_nothing(client: TestClient, manifest_dir: Path,
                                                                rows: list[dict[str, str]], reason: str) -> None:
    before, version = items_of(client, "scratch-images"), version_of(client, "scratch-images")
    write_table(manifest_dir / "bad.csv", rows)
    job = reindex(client, "scratch-images", "manifests/bad.csv")
    assert job["status"] == "failed" and reason in job["error"], job
    assert str(manifest_dir) not in job["error"]
    assert (items_of(client, "scratch-images"), version_of(client, "scratch-images")) == (before, version)


def test_too_many_workers_is_refused(client: TestClient) -> None:
    response = client.post("/v1/reindex", json={"collection": "scratch2", "source": "texts.jsonl", "workers": 64})
    assert_error(response, 422, "validation_error")
