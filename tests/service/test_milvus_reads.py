"""How a server reads its Milvus collections: ARCSEARCH_MILVUS_CONSISTENCY and ARCSEARCH_MILVUS_EF reach the
MilvusStore of every Milvus collection it serves (the session's real Milvus server, ``milvus_uri``)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from arcsearch.index.milvus_store import MilvusStore
from arcsearch.service.app import create_app
from arcsearch.service.settings import Settings
from tests.service.helpers import ServiceData, local_client, service_settings, wait_ready


def test_consistency_and_ef_settings_reach_the_milvus_store(service_data: ServiceData, milvus_uri: str,
                                                             tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    shutil.copytree(service_data.text_embedder, data_root / "embedders/text")
    settings = service_settings(service_data, collections_dir=tmp_path / "collections", data_root=data_root,
                                index_backend="milvus", milvus_uri=milvus_uri, milvus_consistency="Bounded",
                                milvus_ef=300)
    name = f"reads-{secrets.token_hex(3)}"
    with local_client(create_app(settings)) as client:
        wait_ready(client)
        created = client.post("/v1/collections", json={"name": name, "embedder": "embedders/text"})
        assert created.status_code == 201, created.text
        try:
            store = client.app.state.registry.get(name).store  # type: ignore[attr-defined]
            assert isinstance(store, MilvusStore) and (store.consistency, store.ef) == ("Bounded", 300)
            searched = client.post(f"/v1/collections/{name}/search", json={"text": "a fish", "k": 3})
            assert searched.status_code == 200, searched.text
        finally:
            assert client.delete(f"/v1/collections/{name}").status_code == 204


def test_the_default_reads_are_strong_and_other_levels_are_refused() -> None:
    assert Settings().milvus_consistency == "Strong"
    with pytest.raises(ValidationError, match="milvus_consistency"):
        Settings(milvus_consistency="Weak")
