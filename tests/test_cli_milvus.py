"""``arcsearch index --backend milvus``: a collection indexed offline into a real Milvus server (the ``milvus_uri``
fixture), then served by the service unchanged; run again, it re-indexes by alias swap."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcsearch.cli import main
from arcsearch.index.collections import read_collection
from arcsearch.index.milvus_store import MilvusStore, connect
from arcsearch.service.app import create_app
from tests.service.helpers import ServiceData, local_client, service_settings, wait_ready


def test_index_into_milvus_then_serve_it(service_data: ServiceData, tmp_path: Path, milvus_uri: str) -> None:
    source = service_data.data_root / "scratch.jsonl"  # 20 texts, ids old-0 .. old-19
    root = tmp_path / "collections"
    argv = ["index", "--collection", "offline", "--embedder", str(service_data.text_embedder), "--source",
            str(source), "--collections-dir", str(root), "--device", "cpu", "--backend", "milvus",
            "--milvus-uri", milvus_uri]
    assert main(argv) == 0
    assert read_collection(root, "offline").backend == "milvus"
    client = connect(milvus_uri)
    first = MilvusStore.open(client, "offline")
    assert (len(first), first.source) == (20, str(source.resolve()))
    old_version = first.version
    assert main(argv) == 0  # again: a new version behind the alias, the old one dropped
    assert MilvusStore.open(client, "offline").version != old_version
    assert old_version not in client.list_collections()

    settings = service_settings(service_data, collections_dir=root, milvus_uri=milvus_uri)
    with local_client(create_app(settings)) as served:
        wait_ready(served)
        hits = served.post("/v1/collections/offline/search", json={"text": "anything", "k": 50}).json()
        assert sorted(hit["id"] for hit in hits["queries"][0]["hits"]) == sorted(f"old-{i}" for i in range(20))
        assert served.delete("/v1/collections/offline").status_code == 204
    assert not MilvusStore.exists(client, "offline")


def test_index_into_milvus_needs_a_uri(service_data: ServiceData, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCSEARCH_MILVUS_URI", raising=False)
    with pytest.raises(SystemExit, match="needs --milvus-uri"):
        main(["index", "--collection", "x", "--embedder", str(service_data.text_embedder), "--source",
              str(service_data.data_root / "scratch.jsonl"), "--collections-dir", str(tmp_path), "--backend",
              "milvus"])
    assert not (tmp_path / "x").exists()
