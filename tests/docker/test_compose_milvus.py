"""docker-compose.milvus.yml, added to docker-compose.yml: Milvus standalone (etcd + MinIO + the server, as Milvus
documents it) and N stateless API replicas of the milvus backend, checked as parsed by the real compose CLI."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from arcsearch.service.settings import Settings
from tests.docker.parsing import COMPOSE_FILE, MILVUS_COMPOSE_FILE, MOUNT, VOLUME, mounts, published_ports
from tests.docker.test_compose import KEYS, compose_config

REPLICAS = "api-milvus"


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    """The services of both files as ``docker-compose config`` merges them."""
    result = compose_config(KEYS, "-f", str(MILVUS_COMPOSE_FILE))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_the_file_adds_milvus_and_replicas_to_the_main_one(merged: dict[str, Any]) -> None:
    own = yaml.safe_load(MILVUS_COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    main = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    assert not set(own) & set(main), "the Milvus file must add services, not change the main file's"
    assert {"milvus", "milvus-etcd", "milvus-minio", REPLICAS} <= set(merged)
    assert merged["milvus"]["image"].startswith("milvusdb/milvus:v2.3")
    assert merged["milvus"]["depends_on"].keys() == {"milvus-etcd", "milvus-minio"}


def test_replicas_serve_milvus_collections_from_one_shared_folder(merged: dict[str, Any]) -> None:
    api = merged[REPLICAS]
    env = api["environment"]
    assert env["ARCSEARCH_INDEX_BACKEND"] == "milvus" and env["ARCSEARCH_MILVUS_URI"] == "http://milvus:19530"
    assert env["ARCSEARCH_ADMIN_KEYS"] == KEYS["ARCSEARCH_ADMIN_KEYS"]
    assert env["ARCSEARCH_COLLECTIONS_DIR"] != merged["api"]["environment"]["ARCSEARCH_COLLECTIONS_DIR"], (
        "replicas must not share the FAISS API's folder: it holds that folder's lock")
    assert api["deploy"]["replicas"] >= 2 and api["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert any(target == MOUNT for _, target in mounts(api)) and VOLUME in str(api["volumes"])
    known = {f"ARCSEARCH_{name.upper()}" for name in Settings.model_fields}
    assert {key for key in env if key.startswith("ARCSEARCH_")} <= known


def test_only_the_replicas_publish_ports_and_on_loopback(merged: dict[str, Any]) -> None:
    for name in ("milvus", "milvus-etcd", "milvus-minio"):
        assert not merged[name].get("ports"), f"{name} must be reachable on the compose network only"
    ports = published_ports(merged[REPLICAS])
    assert ports and all(host_ip == "127.0.0.1" for host_ip, _, _ in ports), ports
