"""bench.peers at a tiny size, for real: arcsearch's server, Chroma's server and Milvus standalone on loopback.

One module-scoped run of the benchmark; the tests read its JSON report and table. Chroma needs the ``bench``
extra and Milvus the ``milvus`` extra (plus ``unshare``): where either cannot start, its test skips with a loud
reason, and ``ARCSEARCH_REQUIRE_MILVUS=1`` (CI) turns the Milvus skip into a failure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.peer_databases import MilvusIndex, milvus_index
from bench.peer_servers import beyond_loopback, listening_addresses, tree_rss_bytes
from bench.peers import factory_for, main
from bench.vector_sets import VectorSet, save_vector_set, unit_rows
from tests import bundles

SIZE, QUERIES, K = 1500, 24, 10


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, VectorSet]:
    """The benchmark on 1,500 clustered 384-d vectors (the dimension of the text embedder it pairs with)."""
    root = tmp_path_factory.mktemp("peers")
    rng = np.random.default_rng(0)
    centres = unit_rows(rng.standard_normal((30, 384)))
    docs = unit_rows(np.repeat(centres, SIZE // 30, axis=0) + 0.5 * rng.standard_normal((SIZE, 384)) / 384 ** 0.5)
    queries = unit_rows(centres[:QUERIES] + 0.5 * rng.standard_normal((QUERIES, 384)) / 384 ** 0.5)
    vectors = VectorSet(name="tiny", doc_vectors=docs, doc_labels=["c"] * SIZE, query_vectors=queries,
                        query_labels=["c"] * QUERIES, notes="clustered test vectors")
    save_vector_set(root / "v.npz", vectors)
    out = root / "out"
    assert main(["--vectors", str(root / "v.npz"), "--embedder", str(bundles.text_embedder(root / "bundles")),
                 "--queries", str(QUERIES), "--sizes", str(SIZE), "--k", str(K), "--clients", "4",
                 "--load-requests", "40", "--load-seconds", "20", "--workdir", str(root / "work"),
                 "--milvus-bin-cache", str(_milvus_bin_cache()), "--out", str(out)]) == 0
    return json.loads((out / "peers.json").read_text()), (out / "peers.md").read_text(), vectors


def _milvus_bin_cache() -> Path:
    """Where the test session unpacks the Milvus binaries (tests/conftest.py's milvus_uri does the same)."""
    try:
        version = importlib.metadata.version("milvus")
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    return bundles.data_dir() / f"milvus-{version}-bin"


def _rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (entry,) = report["sets"]
    return {row["kind"]: row for row in entry["engines"]}


def test_the_table_has_a_row_per_engine_and_numbers_only_for_those_that_ran(run: tuple) -> None:
    report, table, _ = run
    lines = [line for line in table.splitlines() if line.startswith("| 1,500 × 384 |")]
    rows = _rows(report)
    assert set(rows) == {"faiss-in-process", "arcsearch-faiss", "arcsearch-milvus", "chroma", "milvus"}
    assert len(lines) == len(rows)
    for row in rows.values():
        (line,) = [line for line in lines if f"| {row['engine']} |" in line]
        if row["status"] == "ok":
            assert row["queries"] == QUERIES and row["load_requests"] > 0 and row["load_failures"] == 0
            assert 0 < row["p50_ms"] <= row["p99_ms"] and row["qps"] > 0 and row["build_s"] > 0
            assert f"{row['recall_at_k']:.3f}" in line
        else:
            assert row["reason"] and f"{row['status']}: {row['reason']}" in line and "p50_ms" not in row
    assert rows["arcsearch-faiss"]["status"] == "ok" and rows["arcsearch-faiss"]["rss_bytes"] > 2**20
    assert (Path(report["command"].split("--out ")[1]) / "peers.png").stat().st_size > 1000


def test_reported_recall_is_what_a_brute_force_check_finds(run: tuple) -> None:
    report, _, vectors = run
    scores = vectors.query_vectors @ vectors.doc_vectors.T
    truth = [set(np.argsort(-row)[:K].tolist()) for row in scores]
    for row in _rows(report).values():
        if row["status"] != "ok":
            continue
        recall = np.mean([len(truth[i] & set(ids)) / K for i, ids in enumerate(row["ids"])])
        assert row["recall_at_k"] == pytest.approx(recall), row["engine"]
        if row["param_name"] is not None:  # tuned until the target, unless the ladder ran out
            assert row["recall_at_k"] >= report["recall_target"] or row["param"] == row["tuning"][-1][0]


def test_arcsearch_over_http_answers_what_the_same_index_answers_in_process(run: tuple) -> None:
    rows = _rows(run[0])
    local, served = rows["faiss-in-process"], rows["arcsearch-faiss"]
    assert served["param"] == local["param"] and served["ids"] == local["ids"]
    assert served["reference_p50_ms"] > 0 and run[0]["sets"][0]["ratios"]["http_p50_vs_in_process"] > 0


def skip_unless_required(message: str, require_variable: str) -> None:
    """Skip loudly with ``message``, or fail where ``require_variable`` is 1 (CI, which installs the server)."""
    if os.environ.get(require_variable) == "1":
        pytest.fail(message)
    pytest.skip(message)


def test_chroma_server_is_measured(run: tuple) -> None:
    row = _rows(run[0])["chroma"]
    if row["status"] == "unavailable":
        skip_unless_required(f"CHROMA SERVER NOT BENCHED: {row['reason']} (pip install -e '.[bench]')",
                             "ARCSEARCH_REQUIRE_CHROMA")
    assert row["status"] == "ok" and row["rss_bytes"] > 2**20 and row["param_name"] == "hnsw ef_search"


def test_milvus_server_is_measured(run: tuple) -> None:
    row = _rows(run[0])["milvus"]
    if row["status"] == "unavailable":
        skip_unless_required(f"MILVUS SERVER NOT BENCHED: {row['reason']}", "ARCSEARCH_REQUIRE_MILVUS")
    assert row["status"] == "ok" and row["rss_bytes"] > 2**20 and row["param"] >= K


def test_arcsearch_on_milvus_is_measured_on_the_graph_the_milvus_peer_builds(run: tuple) -> None:
    rows = _rows(run[0])
    row = rows["arcsearch-milvus"]
    if row["status"] == "unavailable":
        skip_unless_required(f"ARCSEARCH ON MILVUS NOT BENCHED: {row['reason']}", "ARCSEARCH_REQUIRE_MILVUS")
    assert row["status"] == "ok" and row["param_name"] == "ef" and row["recall_at_k"] >= 0.95
    assert row["info"]["consistency"] == "Bounded" and row["info"]["index"] == {**rows["milvus"]["info"]["index"]}
    assert run[0]["sets"][0]["ratios"]["milvus_backend_qps_vs_milvus"] > 0


def test_listening_sockets_of_a_process_tree_are_found_and_judged() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert f"127.0.0.1:{port}" in listening_addresses(os.getpid())
    assert beyond_loopback(["127.0.0.1:80", "::1:443", "0.0.0.0:19530", ":::9091", "10.0.0.5:8000"]) == [
        "0.0.0.0:19530", ":::9091", "10.0.0.5:8000"]
    assert tree_rss_bytes(os.getpid()) > 2**20


def test_auto_factory_is_the_choosers_pick_and_milvus_builds_the_same_family() -> None:
    args = argparse.Namespace(factory="auto", recall=0.95)
    assert factory_for(args, np.zeros((1_000_000, 8), np.float32)) == "IVF4096,Flat"
    assert factory_for(argparse.Namespace(factory="HNSW32", recall=0.95), np.zeros((10, 8), np.float32)) == "HNSW32"
    assert milvus_index("IVF4096,Flat") == MilvusIndex("IVF_FLAT", {"nlist": 4096}, "nprobe")
    assert milvus_index("HNSW32").index_type == "HNSW" and milvus_index("HNSW32").param_name == "ef"
