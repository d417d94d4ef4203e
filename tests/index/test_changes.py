"""The change log: failed writes change nothing and say why (busy, full); rebasing onto a new version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from arcsearch.index.changes import Change, ChangeLog, replay_onto
from arcsearch.index.durable import StorageBusyError, StorageFullError
from arcsearch.index.items import ItemRecord
from arcsearch.index.store import IndexStore
from tests.bundles import unit_vectors

DIM = 8


def upsert(item_id: str, seed: int) -> Change:
    vector = unit_vectors(1, DIM, seed=seed)[0]
    return Change("upsert", item_id, None, ItemRecord(item_id, "x", "", {}), vector.tobytes())


def test_a_write_that_meets_a_lock_raises_busy_and_writes_nothing(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "changes.sqlite", busy_timeout_s=0.1)
    other = sqlite3.connect(tmp_path / "changes.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StorageBusyError, match="changes.sqlite is locked"):
        log.append("v1", upsert("a", 1))
    other.execute("ROLLBACK")
    assert log.replay("v1") == [] and log.last_seq() == 0
    seq = log.append("v1", upsert("b", 2))
    assert seq == log.last_seq() == 1 and [c.external_id for c in log.replay("v1")] == ["b"]
    log.retract(seq)
    assert log.replay("v1") == []


def test_a_full_disk_raises_full_and_writes_nothing(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "changes.sqlite")
    (pages,) = log._conn.execute("PRAGMA page_count").fetchone()
    log._conn.execute(f"PRAGMA max_page_count = {pages}")  # the file cannot grow, as on a full disk
    big = Change("upsert", "big", None, ItemRecord("big", "x", "", {"blob": "y" * 20_000}), b"\0" * 32)
    with pytest.raises(StorageFullError, match="cannot grow"):
        log.append("v1", big)
    assert log.replay("v1") == []


def test_rebase_copies_later_changes_in_order_and_a_replay_applies_them(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "changes.sqlite")
    log.append("v1", upsert("early", 1))
    mark = log.last_seq()
    log.append("v1", upsert("a", 2))
    log.append("v1", upsert("b", 3))
    log.append("v1", Change("delete", "a"))
    log.append("v1", Change("delete", "id-0"))
    assert log.rebase("v1", mark, "v2") == 4
    assert [(c.op, c.external_id, c.faiss_id) for c in log.replay("v2")] == [
        ("upsert", "a", None), ("upsert", "b", None), ("delete", "a", None), ("delete", "id-0", None)]
    log.discard_except("v2")
    assert log.replay("v1") == []

    records = [ItemRecord(f"id-{i}") for i in range(5)]
    IndexStore.build(unit_vectors(5, DIM, seed=9), records, modality="text", embedder_sha256="e" * 64).save(
        tmp_path / "v2")
    store = IndexStore.load(tmp_path / "v2")
    assert replay_onto(store, log, "v2") == 4
    assert store.get("early") is None and store.get("a") is None and store.get("id-0") is None
    assert store.get("b") is not None and len(store) == 5 and store.next_id == 7  # ids 5 (a) and 6 (b) used
    assert np.allclose(store.vector_of("b"), unit_vectors(1, DIM, seed=3)[0], atol=1e-6)
