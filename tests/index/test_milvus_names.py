"""index.milvus_names and index.backend without a server: Milvus names, filter expressions, the protocol."""

from __future__ import annotations

import numpy as np
import pytest

from arcsearch.index.backend import SearchBackend
from arcsearch.index.items import ItemRecord
from arcsearch.index.milvus_names import (
    MilvusStoreError,
    alias_for,
    filter_expression,
    is_version_of,
    new_version_name,
)
from arcsearch.index.store import IndexStore


def test_aliases_keep_collection_names_apart() -> None:
    names = ["a-b", "a_b", "a_d", "a--", "a__", "a_-", "a-_", "9x", "x"]
    aliases = [alias_for(n) for n in names]
    assert len(set(aliases)) == len(names)
    assert all(a.startswith("arcsearch_") and a.replace("_", "").isalnum() for a in aliases)
    with pytest.raises(MilvusStoreError, match="must match"):
        alias_for("Bad Name")


def test_versions_belong_to_one_alias_only() -> None:
    version = new_version_name(alias_for("x"))
    assert is_version_of(version, alias_for("x"))
    assert not is_version_of(version, alias_for("x-v1"))
    assert not any(is_version_of(new_version_name(alias_for(other)), alias_for("x"))
                   for other in ["x_v1", "x-v1", "x_v"])


def test_filter_expressions_quote_what_they_are_given() -> None:
    assert filter_expression(None, None) == ""
    assert filter_expression("a\"b", {"n": 3, "ok": True, "w": 0.5}, ["id\\1"]) == (
        '(label == "a\\"b") and (metadata["n"] == 3) and (metadata["ok"] == true) and (metadata["w"] == 0.5) '
        'and (external_id not in ["id\\\\1"])')
    for bad in [{"a]": 1}, {"n": None}, {"n": 2**63}, {"n": float("inf")}]:
        with pytest.raises(MilvusStoreError):
            filter_expression(None, bad)


def test_the_faiss_store_is_a_search_backend() -> None:
    vectors = np.eye(4, dtype=np.float32)
    store = IndexStore.build(vectors, [ItemRecord(f"i{n}") for n in range(4)], modality="text",
                             embedder_sha256="e" * 64)
    assert isinstance(store, SearchBackend)
