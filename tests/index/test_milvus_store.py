"""index.milvus_store against a real Milvus standalone server (the ``milvus_uri`` fixture of tests/conftest.py).

Search is compared with brute force over numpy, and filters with the FAISS store's own rule
(index.items.metadata_matches), so both backends answer the same.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from arcsearch.index.backend import SearchBackend
from arcsearch.index.hits import Hit
from arcsearch.index.items import ItemRecord, metadata_matches
from arcsearch.index.milvus_store import MilvusStore, MilvusStoreError, connect

DIM = 16
N = 120
TRICKY = ['quote " and back \\ slash', "line\nbreak\ttab\x01", "é ü 字 🙂", "it's ' single", "x] or true or [x"]
EMBEDDER = "a" * 64


def records_for(n: int, *, prefix: str = "item") -> list[ItemRecord]:
    return [ItemRecord(f"{prefix}-{i:03d}", label=f"l{i % 4}", source=f"src/{i}.txt",
                       metadata={"n": i, "even": i % 2 == 0, "tag": TRICKY[i % len(TRICKY)], "w": i / 4})
            for i in range(n)]


def unit_vectors(n: int, *, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, records: list[ItemRecord], queries: np.ndarray, k: int, *,
                label: str | None = None, metadata: dict[str, Any] | None = None) -> list[list[tuple[str, float]]]:
    """The FAISS store's answer, computed in numpy: (id, score) of the k best allowed items, best first."""
    allowed = [i for i, r in enumerate(records) if metadata_matches(r, label, metadata or {})]
    scores = queries @ vectors[allowed].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(records[allowed[j]].external_id, float(row[j])) for j in picks] for row, picks in zip(scores, order,
                                                                                                     strict=True)]


def ids_and_scores(hits: list[list[Hit]]) -> list[list[tuple[str, float]]]:
    return [[(hit.external_id, hit.score) for hit in row] for row in hits]


def assert_same(got: list[list[tuple[str, float]]], want: list[list[tuple[str, float]]]) -> None:
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    np.testing.assert_allclose([s for row in got for _, s in row], [s for row in want for _, s in row], atol=1e-5)


@pytest.fixture(scope="module")
def client(milvus_uri: str) -> Any:
    return connect(milvus_uri)


def new_store(client: Any, vectors: np.ndarray, records: list[ItemRecord], **kwargs: Any) -> MilvusStore:
    return MilvusStore.create(client, f"t-{secrets.token_hex(4)}", vectors, records, modality="text",
                              embedder_sha256=EMBEDDER, source="tests", **kwargs)


@pytest.fixture(scope="module")
def corpus(client: Any) -> Iterator[tuple[MilvusStore, np.ndarray, list[ItemRecord]]]:
    """A read-only collection of N items (FLAT), shared by the search and filter tests."""
    vectors, records = unit_vectors(N, seed=0), records_for(N)
    store = new_store(client, vectors * 3.0, records)  # stored normalised, whatever the scale given
    yield store, vectors, records
    store.drop()


@pytest.fixture()
def scratch(client: Any) -> Iterator[tuple[MilvusStore, np.ndarray, list[ItemRecord]]]:
    vectors, records = unit_vectors(30, seed=1), records_for(30)
    store = new_store(client, vectors, records)
    yield store, vectors, records
    store.drop()


def test_search_equals_brute_force(corpus: tuple[MilvusStore, np.ndarray, list[ItemRecord]]) -> None:
    store, vectors, records = corpus
    queries = unit_vectors(7, seed=5)
    hits = store.search(queries * 2.0, 10)
    assert_same(ids_and_scores(hits), brute_force(vectors, records, queries, 10))
    first = hits[0][0]
    stored = next(r for r in records if r.external_id == first.external_id)
    assert (first.label, first.source, first.metadata) == (stored.label, stored.source, stored.metadata)
    assert len(store) == N and store.search(queries[:0], 3) == []
    assert isinstance(store, SearchBackend)


def test_min_score_drops_lower_hits(corpus: tuple[MilvusStore, np.ndarray, list[ItemRecord]]) -> None:
    store, vectors, records = corpus
    queries = unit_vectors(3, seed=6)
    want = brute_force(vectors, records, queries, 20)
    floor = float(np.median([s for row in want for _, s in row]))
    got = ids_and_scores(store.search(queries, 20, min_score=floor))
    assert_same(got, [[(i, s) for i, s in row if s >= floor] for row in want])
    assert 0 < sum(map(len, got)) < 60


@pytest.mark.parametrize(("label", "metadata"), [
    ("l1", None), (None, {"even": True}), (None, {"n": 17}), (None, {"w": 2.5}), ("l2", {"even": True}),
    *[(None, {"tag": tag}) for tag in TRICKY], ("l3", {"tag": TRICKY[0]}), ("nope", None), (None, {"missing": 1}),
])
def test_filters_match_the_faiss_rule(corpus: tuple[MilvusStore, np.ndarray, list[ItemRecord]], label: str | None,
                                      metadata: dict[str, Any] | None) -> None:
    store, vectors, records = corpus
    queries = unit_vectors(4, seed=7)
    got = ids_and_scores(store.search(queries, 8, label=label, metadata=metadata))
    assert_same(got, brute_force(vectors, records, queries, 8, label=label, metadata=metadata))


def test_exclude_leaves_items_out(corpus: tuple[MilvusStore, np.ndarray, list[ItemRecord]]) -> None:
    store, vectors, records = corpus
    query = vectors[:1]
    first = store.search(query, 3)[0]
    assert first[0].external_id == records[0].external_id
    again = store.search(query, 3, exclude=[records[0].external_id, TRICKY[0]])[0]
    assert [h.external_id for h in again] == [h.external_id for h in first[1:]] + [again[-1].external_id]
    assert records[0].external_id not in {h.external_id for h in again}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, "k must be"), ({"k": 3, "metadata": {"a b": 1}}, "filter key"),
    ({"k": 3, "metadata": {"n": [1]}}, "string, boolean or number"), ({"k": 3, "metadata": {"n": float("nan")}},
                                                                      "finite"),
])
def test_bad_searches_are_refused(corpus: tuple[MilvusStore, np.ndarray, list[ItemRecord]], kwargs: dict[str, Any],
                                  message: str) -> None:
    store, vectors, _ = corpus
    with pytest.raises(MilvusStoreError, match=message):
        store.search(vectors[:1], **kwargs)
    with pytest.raises(MilvusStoreError, match="dimension"):
        store.search(np.ones((1, DIM + 1), np.float32), 3)


def test_the_embedder_hash_is_stored_with_the_collection(milvus_uri: str,
                                                          corpus: tuple[MilvusStore, np.ndarray, list[ItemRecord]]
                                                          ) -> None:
    store, vectors, records = corpus
    other = MilvusStore.open(connect(milvus_uri), store.name)
    assert (other.info.embedder_sha256, other.dim, other.info.modality) == (EMBEDDER, DIM, "text")
    with pytest.raises(MilvusStoreError, match="already exists"):
        MilvusStore.create(other.client, store.name, vectors, records, modality="text", embedder_sha256=EMBEDDER)
    with pytest.raises(MilvusStoreError, match="uses embedder"):
        other.reindex(vectors, records, embedder_sha256="b" * 64)
    with pytest.raises(MilvusStoreError, match="does not exist"):
        MilvusStore.open(other.client, "never-made")


def test_upsert_and_delete_are_seen_by_a_second_connection(
        milvus_uri: str, scratch: tuple[MilvusStore, np.ndarray, list[ItemRecord]]) -> None:
    store, vectors, records = scratch
    other = MilvusStore.open(connect(milvus_uri), store.name)
    fresh = unit_vectors(1, seed=9)[0]
    assert store.upsert(ItemRecord("new-1", "fresh", "s", {"tag": TRICKY[2]}), fresh) is False
    assert other.get("new-1") == ItemRecord("new-1", "fresh", "s", {"tag": TRICKY[2]})
    assert other.search(fresh[None], 1)[0][0].external_id == "new-1"
    np.testing.assert_allclose(other.vector_of("new-1"), fresh, atol=1e-6)

    moved = records[3]
    assert store.upsert(ItemRecord(moved.external_id, "moved", "s2", {"n": -1}), fresh) is True
    top = other.search(fresh[None], 2, label="moved")[0]
    assert [h.external_id for h in top] == [moved.external_id]
    assert len(other) == len(records) + 1

    assert other.delete("new-1") is True and other.delete("new-1") is False
    assert store.get("new-1") is None and store.vector_of("new-1") is None
    assert "new-1" not in {h.external_id for h in store.search(fresh[None], 5)[0]}
    assert len(store) == len(records)


def test_page_walks_items_in_id_order(client: Any) -> None:
    records = records_for(40)
    order = np.random.default_rng(3).permutation(len(records))
    shuffled = [records[i] for i in order]
    store = new_store(client, unit_vectors(25, seed=2), shuffled[:25])
    try:
        for record, vector in zip(shuffled[25:], unit_vectors(15, seed=4), strict=True):
            store.upsert(record, vector)  # a second, growing segment beside the sealed one
        seen, after = [], None
        while page := store.page(after, 7):
            seen += [r.external_id for r in page]
            after = page[-1].external_id
        assert seen == sorted(r.external_id for r in records)
    finally:
        store.drop()


def test_reindex_moves_the_alias_while_searches_answer(
        milvus_uri: str, scratch: tuple[MilvusStore, np.ndarray, list[ItemRecord]]) -> None:
    store, vectors, records = scratch
    reader = MilvusStore.open(connect(milvus_uri), store.name)
    old_version = store.version
    new_records = records_for(25, prefix="new")
    stop = threading.Event()
    answers: list[set[str]] = []
    errors: list[BaseException] = []

    def search_all_the_time() -> None:
        while not stop.is_set():
            try:
                answers.append({hit.external_id for hit in reader.search(vectors[:2], 5)[0]})
            except Exception as exc:  # any failure while the alias moves is what this test is about
                errors.append(exc)

    thread = threading.Thread(target=search_all_the_time)
    thread.start()
    try:
        new_version = store.reindex(unit_vectors(25, seed=8), new_records, embedder_sha256=EMBEDDER, source="v2")
        for _ in range(3):
            answers.append({hit.external_id for hit in reader.search(vectors[:2], 5)[0]})
    finally:
        stop.set()
        thread.join()
    assert errors == []
    old_ids, new_ids = {r.external_id for r in records}, {r.external_id for r in new_records}
    assert all(a <= old_ids or a <= new_ids for a in answers) and len(answers[-1]) == 5
    assert answers[0] <= old_ids and answers[-1] <= new_ids
    assert new_version != old_version and reader.version == new_version
    assert old_version not in store.client.list_collections() and len(reader) == 25
    assert MilvusStore.open(reader.client, store.name).info.source == "v2"


def test_hnsw_collection_finds_the_brute_force_neighbours(client: Any) -> None:
    vectors, records = unit_vectors(N, seed=10), records_for(N)
    store = new_store(client, vectors, records, index_type="HNSW")
    try:
        queries = unit_vectors(5, seed=11)
        assert_same(ids_and_scores(store.search(queries, 5)), brute_force(vectors, records, queries, 5))
        assert MilvusStore.open(client, store.name).info.index_type == "HNSW"
    finally:
        store.drop()


def test_hnsw_build_params_and_search_ef_are_the_ones_given(client: Any) -> None:
    vectors, records = unit_vectors(N, seed=12), records_for(N)
    store = new_store(client, vectors, records, index_type="HNSW", build_params={"M": 8, "efConstruction": 24})
    try:
        index = client.describe_index(store.version, "vector")
        assert (int(index["M"]), int(index["efConstruction"])) == (8, 24)
        reader = MilvusStore.open(client, store.name, consistency="Bounded", ef=200)
        assert (reader.consistency, reader.ef) == ("Bounded", 200)
        queries = unit_vectors(3, seed=13)
        assert_same(ids_and_scores(reader.search(queries, 5)), brute_force(vectors, records, queries, 5))
    finally:
        store.drop()
