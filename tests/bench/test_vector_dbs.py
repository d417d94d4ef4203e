"""bench.vector_dbs and its parts (vector_sets, vector_engines, vector_measure): exact truth and recall,
synthetic vectors, ratios and the table, and a real run of arcsearch's FAISS path.

The database adapters (Chroma, Qdrant local, Milvus Lite) come with the optional ``bench`` extra, which
``make test`` does not install; they are exercised by the benchmark itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.vector_dbs import format_table, main
from bench.vector_engines import Engine, engine_factories
from bench.vector_measure import add_ratios, run_vector_set
from bench.vector_sets import (
    VectorSet,
    exact_filtered_top_k,
    exact_top_k,
    load_vector_set,
    query_text,
    random_unit_vectors,
    recall_at_k,
    save_vector_set,
    unit_rows,
    with_random,
)


def _clustered_set(rng: np.random.Generator, *, classes: int = 12, per_class: int = 10, dim: int = 32,
                   queries: int = 12) -> VectorSet:
    """Documents around ``classes`` random centres, labelled by centre; one query near each centre."""
    centres = unit_rows(rng.standard_normal((classes, dim)))
    docs = unit_rows(np.repeat(centres, per_class, axis=0) + 0.4 * rng.standard_normal((classes * per_class, dim)))
    labels = [f"class_{c}.n{c:08d}" for c in range(classes) for _ in range(per_class)]
    picked = np.arange(queries) % classes
    query_vectors = unit_rows(centres[picked] + 0.4 * rng.standard_normal((queries, dim)))
    return VectorSet(name="tiny", doc_vectors=docs, doc_labels=labels, query_vectors=query_vectors,
                     query_labels=[f"class_{c}.n{c:08d}" for c in picked], notes="clustered test vectors")


def test_exact_top_k_is_the_full_sort_truncated() -> None:
    rng = np.random.default_rng(1)
    docs, queries = unit_rows(rng.standard_normal((300, 16))), unit_rows(rng.standard_normal((40, 16)))
    top = exact_top_k(docs, queries, 10, chunk=7)  # several chunks
    expected = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    np.testing.assert_array_equal(top, expected)


def test_exact_top_k_pads_with_minus_one_when_fewer_docs_than_k() -> None:
    docs = unit_rows(np.eye(3, dtype=np.float32))
    top = exact_top_k(docs, docs[:1], 5)
    assert top[0, 0] == 0 and sorted(top[0, :3].tolist()) == [0, 1, 2] and top[0, 3:].tolist() == [-1, -1]


def test_exact_filtered_top_k_keeps_only_the_label_and_orders_by_score() -> None:
    docs = unit_rows(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.8, 0.2], [0.5, 0.5]], dtype=np.float32))
    labels = ["a", "b", "a", "a", "b"]
    truth = exact_filtered_top_k(docs, labels, docs[:1], ["a"], 10)
    assert truth[0].tolist() == [0, 3, 2]  # only the three "a" docs, best first
    assert exact_filtered_top_k(docs, labels, docs[:1], ["b"], 1)[0].tolist() == [1]


def test_recall_at_k_counts_the_overlap_per_query_and_averages() -> None:
    truth = [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert recall_at_k([[4, 3, 2, 1], [8, 7, 6, 5]], truth, 4) == 1.0  # order does not matter
    assert recall_at_k([[1, 2, 9, 9], [0, 0, 0, 0]], truth, 4) == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert recall_at_k([[1, 2, 3, 4]], [[1, 2, 3, 4, 5]], 2) == 1.0  # only the first k of each count
    assert recall_at_k([[7]], [[7, -1, -1]], 3) == 1.0  # fewer than k exist (filtered): padding ignored
    with pytest.raises(ValueError, match="result lists"):
        recall_at_k([[1]], truth, 4)


def test_random_unit_vectors_are_unit_and_fitted_ones_follow_the_real_distribution() -> None:
    rng = np.random.default_rng(2)
    like = unit_rows(rng.standard_normal((500, 8)) + np.array([3, 0, 0, 0, 0, 0, 0, 0]))
    fitted = random_unit_vectors(1000, like, np.random.default_rng(3), chunk=300)
    uniform = random_unit_vectors(1000, like, np.random.default_rng(3), kind="uniform")
    for made in (fitted, uniform):
        assert made.shape == (1000, 8) and made.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(made, axis=1), 1.0, rtol=1e-5)
    assert abs(fitted[:, 0].mean() - like[:, 0].mean()) < 0.1  # the real vectors lean on axis 0, so do these
    assert abs(uniform[:, 0].mean()) < 0.1
    with pytest.raises(ValueError, match="random kind"):
        random_unit_vectors(2, like, rng, kind="gaussian")


def test_with_random_appends_labelled_vectors_and_keeps_the_queries() -> None:
    base = _clustered_set(np.random.default_rng(4))
    grown = with_random(base, 50, kind="fitted", seed=0)
    assert grown.size == base.size + 50 and grown.doc_labels[:base.size] == base.doc_labels
    assert set(grown.doc_labels[base.size:]) <= set(base.doc_labels)
    np.testing.assert_array_equal(grown.query_vectors, base.query_vectors)


def test_query_text_is_the_hypernym_name() -> None:
    assert query_text("summer_squash.n07717070") == "summer squash"


def test_vector_set_round_trips_through_npz(tmp_path: Path) -> None:
    vectors = _clustered_set(np.random.default_rng(5))
    save_vector_set(tmp_path / "v.npz", vectors)
    loaded = load_vector_set(tmp_path / "v.npz", queries=5)
    np.testing.assert_allclose(loaded.doc_vectors, vectors.doc_vectors, rtol=1e-6)
    assert loaded.doc_labels == vectors.doc_labels and loaded.query_labels == vectors.query_labels[:5]
    assert len(loaded.query_vectors) == 5 and loaded.notes == "clustered test vectors"


def _row(engine: str, key: str, p50: float, **extra: object) -> dict[str, object]:
    return {"key": key, "engine": engine, "status": "ok", "reason": "", "build_s": 2.0, "single_queries": 10,
            "p50_ms": p50, "p99_ms": 2 * p50, "batch_qps": 1000.0 / p50, "recall_at_k": 1.0,
            "filtered_queries": 10, "filtered_p50_ms": p50, "filtered_recall_at_k": 1.0, **extra}


def test_ratios_and_table_name_every_engine_and_why_one_is_missing() -> None:
    rows = [_row("arcsearch FAISS Flat", "faiss:Flat", 1.0), _row("Chroma", "chroma", 3.0, single_queries=4),
            {"key": "milvus", "engine": "milvus", "status": "unavailable", "reason": "cannot import: no wheel"}]
    add_ratios(rows, "faiss:Flat")
    assert rows[0]["ratios"]["p50_ms"] == 1.0 and rows[1]["ratios"]["p50_ms"] == pytest.approx(3.0)
    assert rows[1]["ratios"]["batch_qps"] == pytest.approx(1 / 3) and "ratios" not in rows[2]
    table = format_table([{"size": 105784, "dim": 384, "queries": 10, "engines": rows}])
    lines = table.strip().splitlines()
    assert lines[0].startswith("| vectors | engine | build s |") and len(lines) == 5
    assert "| 105,784 × 384 | arcsearch FAISS Flat | 2.00 | 1.00 / 2.00 | 1,000 | 1.000 |" in lines[2]
    assert "3.00 / 6.00 (4 q)" in lines[3] and "3.00× / 0.33× / 1.00× / 3.00×" in lines[3]
    assert "unavailable: cannot import: no wheel" in lines[4]


def test_an_engine_that_cannot_be_imported_is_reported_not_measured(tmp_path: Path) -> None:
    def missing(workdir: Path) -> Engine:
        raise ImportError("No module named 'chromadb'")

    makers = engine_factories(["Flat"], []) | {"chroma": missing}
    result = run_vector_set(_clustered_set(np.random.default_rng(6)), makers, k=5, batch_size=4,
                            batch_rounds=2, deadline=float("inf"), budget_s=30.0, workdir=tmp_path)
    by_key = {row["key"]: row for row in result["engines"]}
    assert by_key["chroma"]["status"] == "unavailable" and "chromadb" in by_key["chroma"]["reason"]
    assert "p50_ms" not in by_key["chroma"] and by_key["faiss:Flat"]["recall_at_k"] == 1.0


def test_engine_factories_refuse_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown engines"):
        engine_factories(["Flat"], ["pinecone"])


def test_main_runs_arcsearch_faiss_flat_and_hnsw_on_real_and_grown_sets(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    save_vector_set(tmp_path / "v.npz", _clustered_set(np.random.default_rng(7), classes=20, queries=20))
    out = tmp_path / "results.json"
    assert main(["--vectors", str(tmp_path / "v.npz"), "--queries", "20", "--extra-random", "400",
                 "--engines", "", "--factories", "Flat,HNSW32", "--batch-size", "8", "--batch-rounds", "4",
                 "--k", "10", "--max-seconds", "120", "--workdir", str(tmp_path / "work"),
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [s["size"] for s in report["sets"]] == [200, 600] and report["k"] == 10
    assert report["machine"]["versions"]["faiss-cpu"]
    for entry in report["sets"]:
        flat, hnsw = entry["engines"]
        assert (flat["engine"], hnsw["engine"]) == ("arcsearch FAISS Flat", "arcsearch FAISS HNSW32")
        assert flat["single_queries"] == 20 and flat["batch_calls"] == 4 and flat["filtered_queries"] == 20
        assert flat["recall_at_k"] == 1.0 and flat["filtered_recall_at_k"] == 1.0  # Flat is exact
        assert hnsw["recall_at_k"] >= 0.9  # efSearch 16 with an IDSelector misses some filtered hits:
        assert 0.5 <= hnsw["filtered_recall_at_k"] <= 1.0  # measured, not assumed to be exact
        assert flat["ratios"]["p50_ms"] == 1.0 and hnsw["ratios_against"] == "arcsearch FAISS Flat"
        assert 0 < flat["p50_ms"] <= flat["p99_ms"] and flat["batch_qps"] > 0 and flat["build_s"] > 0
        assert entry["filter_matches_median"] >= 10
    assert (tmp_path / "work" / "glosses" / "faiss-Flat" / "index.faiss").is_file()  # the bundle the service loads
    table = capsys.readouterr().out
    assert table.count("arcsearch FAISS Flat") == 2 and "| 600 × 32 | arcsearch FAISS HNSW32 |" in table
