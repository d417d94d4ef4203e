"""index.store: build stages, save/load round trip, search against brute force, error cases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest

from arcsearch.index import store as store_module
from arcsearch.index.bundle import BundleError, EmbedderManifest
from arcsearch.index.items import ItemRecord, ItemTableError, SqliteItems, write_items
from arcsearch.index.pairing import EmbedderMismatchError, check_embedder_pairing
from arcsearch.index.store import (
    INDEX_FILE,
    ITEMS_FILE,
    IndexStore,
    IndexStoreError,
    make_index,
)
from tests.bundles import unit_vectors

DIM = 16


def records(n: int) -> list[ItemRecord]:
    return [ItemRecord(f"item-{i}", f"class-{i % 5}", f"src/{i}", {"i": i, "name": f"ñ-{i}"}) for i in range(n)]


def build(n: int = 300, factory: str = "Flat", seed: int = 0) -> IndexStore:
    return IndexStore.build(unit_vectors(n, DIM, seed=seed), records(n), modality="text",
                            embedder_sha256="e" * 64, factory=factory, source="unit-test")


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "HNSW16", "PCA8,Flat"])
def test_save_then_load_gives_identical_search_results(tmp_path: Path, factory: str) -> None:
    built = build(factory=factory)
    built.save(tmp_path / "bundle")
    loaded = IndexStore.load(tmp_path / "bundle")
    queries = unit_vectors(25, DIM, seed=1)
    before, after = built.search(queries, 7), loaded.search(queries, 7)
    assert before == after
    assert all(len(row) == 7 for row in after)
    assert loaded.manifest == built.manifest
    assert loaded.manifest.factory == factory and loaded.manifest.num_items == 300


def test_flat_search_matches_brute_force_cosine(tmp_path: Path) -> None:
    vectors = unit_vectors(200, DIM) * 3.0  # unnormalised input: the store normalises
    built = IndexStore.build(vectors, records(200), modality="image", embedder_sha256="e" * 64)
    built.save(tmp_path / "b")
    queries = unit_vectors(10, DIM, seed=2)
    hits = IndexStore.load(tmp_path / "b").search(queries, 5)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = np.argsort(-(queries @ unit.T), axis=1)[:, :5]
    for row, want in zip(hits, expected, strict=True):
        assert [h.external_id for h in row] == [f"item-{i}" for i in want]
        assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)
    assert hits[0][0].score == pytest.approx(float(queries[0] @ unit[expected[0, 0]]), abs=1e-5)


def test_hits_carry_label_source_and_metadata(tmp_path: Path) -> None:
    build().save(tmp_path / "b")
    loaded = IndexStore.load(tmp_path / "b")
    vectors = unit_vectors(300, DIM)
    (top,) = loaded.search(vectors[42:43], 1)
    assert top[0].external_id == "item-42" and top[0].score == pytest.approx(1.0, abs=1e-5)
    assert (top[0].label, top[0].source, top[0].metadata) == ("class-2", "src/42", {"i": 42, "name": "ñ-42"})


def test_k_larger_than_index_returns_every_item_once(tmp_path: Path) -> None:
    built = build(n=4)
    (row,) = built.search(unit_vectors(1, DIM, seed=3), 50)
    assert sorted(h.external_id for h in row) == [f"item-{i}" for i in range(4)]
    with pytest.raises(IndexStoreError):
        built.search(unit_vectors(1, DIM), 0)


def test_bad_inputs_raise_specific_errors() -> None:
    with pytest.raises(ItemTableError, match="more than once"):
        IndexStore.build(unit_vectors(2, DIM), [ItemRecord("a"), ItemRecord("a")], modality="text",
                         embedder_sha256="e")
    with pytest.raises(IndexStoreError, match="2 vectors but 3 records"):
        IndexStore.build(unit_vectors(2, DIM), records(3), modality="text", embedder_sha256="e")
    with pytest.raises(IndexStoreError, match="zero items"):
        IndexStore.build(np.zeros((0, DIM), np.float32), [], modality="text", embedder_sha256="e")
    nan = unit_vectors(3, DIM)
    nan[1, 0] = np.nan
    with pytest.raises(IndexStoreError, match="NaN"):
        IndexStore.build(nan, records(3), modality="text", embedder_sha256="e")
    with pytest.raises(IndexStoreError, match="dimension"):
        build(n=10).search(unit_vectors(1, DIM + 1), 3)
    with pytest.raises(IndexStoreError, match="factory"):
        make_index(DIM, "NoSuchIndex")


def test_make_index_wraps_indexes_that_cannot_take_ids() -> None:
    assert isinstance(make_index(DIM, "Flat"), faiss.IndexIDMap2)
    assert isinstance(faiss.downcast_index(make_index(DIM, "IVF4,Flat")), faiss.IndexIVFFlat)


def test_save_refuses_an_existing_folder_and_leaves_nothing_on_failure(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    built = build(n=10)
    (tmp_path / "exists").mkdir()
    with pytest.raises(IndexStoreError, match="already exists"):
        built.save(tmp_path / "exists")

    def broken_write(*_args: object, **_kwargs: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "write_items", broken_write)
    with pytest.raises(OSError, match="disk full"):
        built.save(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]


def test_load_refuses_incomplete_bundles(tmp_path: Path) -> None:
    build(n=10).save(tmp_path / "b")
    (tmp_path / "b" / ITEMS_FILE).unlink()
    with pytest.raises(ItemTableError, match="missing"):
        IndexStore.load(tmp_path / "b")
    (tmp_path / "b" / INDEX_FILE).unlink()
    with pytest.raises(IndexStoreError, match=INDEX_FILE):
        IndexStore.load(tmp_path / "b")
    with pytest.raises(BundleError):
        IndexStore.load(tmp_path / "nothing-here")


def test_embedder_pairing_is_checked_by_weights_hash() -> None:
    manifest = build(n=5).manifest
    same = EmbedderManifest(modality="text", embedding_dim=DIM, weights_file="model", weights_sha256="e" * 64)
    check_embedder_pairing(manifest, same)
    other = same.model_copy(update={"weights_sha256": "f" * 64})
    with pytest.raises(EmbedderMismatchError, match="built with embedder eeeeeeeeeeee"):
        check_embedder_pairing(manifest, other)
    with pytest.raises(EmbedderMismatchError, match="dimension"):
        check_embedder_pairing(manifest, same.model_copy(update={"embedding_dim": DIM * 2}))


def test_label_filters_use_an_index_not_a_table_scan(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    write_items(path, [ItemRecord(f"id{i}", label=f"class{i % 7}") for i in range(50)])
    with sqlite3.connect(path) as conn:
        plan = " ".join(row[-1] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT faiss_id FROM items WHERE label = ?", ("class3",)))
    assert "USING COVERING INDEX items_label" in plan or "USING INDEX items_label" in plan, plan
    assert SqliteItems(path).matching("class3", {}) == [i for i in range(50) if i % 7 == 3]
