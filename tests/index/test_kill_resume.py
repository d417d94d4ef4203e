"""SIGKILL a real ``arcsearch index`` process at several points of a sharded re-index, then run it again: it
resumes from the finished shards, and the published index holds every item exactly once, with the vectors
of an uninterrupted run. Killed worker processes do not outlive their parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from arcsearch.index.collections import current_index_dir, index_collection
from arcsearch.index.store import IndexStore
from tests import bundles
from tests.bundles import REPO

ITEMS, BATCH, SHARD = 240, 8, 16  # 15 shards


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = bundles.prepared().texts_file.read_text(encoding="utf-8").splitlines()[:ITEMS]
    rows = [{"id": f"t{i}", "text": json.loads(line)["text"]} for i, line in enumerate(lines)]  # no labels
    return bundles.write_jsonl(tmp_path_factory.mktemp("corpus") / "texts.jsonl", rows)


def start_index(embedder: Path, corpus: Path, root: Path, log: Path, *, workers: int = 1) -> subprocess.Popen:
    command = [sys.executable, "-m", "arcsearch", "index", "--collection", "texts", "--embedder", str(embedder),
               "--source", str(corpus), "--collections-dir", str(root), "--device", "cpu", "--batch-size",
               str(BATCH), "--shard-items", str(SHARD), "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("a") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def shards_of(root: Path) -> set[str]:
    return {p.name for p in (root / "texts" / "shards").glob("*/shard-*.json")}


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill_when(proc: subprocess.Popen, root: Path, log: Path, *, shards: int) -> list[int]:
    """SIGKILL ``proc`` once its plan is written and ``shards`` shards are finished; returns the pids of its
    children at that moment."""
    deadline = time.monotonic() + 300
    while not list((root / "texts" / "shards").glob("*/plan.json")) or len(shards_of(root)) < shards:
        assert proc.poll() is None, f"finished before the kill point:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)
    children = children_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return children


def vectors_and_ids(root: Path) -> tuple[np.ndarray, list[str]]:
    store = IndexStore.load(current_index_dir(root, "texts"))
    return store.index.reconstruct_n(0, store.index.ntotal), [r.external_id for r in store.items.iter_records()]


def test_killed_index_runs_resume_to_the_uninterrupted_index(text_embedder_dir: Path, corpus: Path,
                                                              tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    index_collection(reference, "texts", text_embedder_dir, corpus, device="cpu", batch_size=BATCH, shard_items=SHARD)
    root, log = tmp_path / "collections", tmp_path / "index.log"
    kept: set[str] = set()
    for kill_at, workers in [(0, 1), (5, 2), (10, 1)]:
        children = kill_when(start_index(text_embedder_dir, corpus, root, log, workers=workers), root, log,
                             shards=kill_at)
        assert kept <= shards_of(root), "a finished shard was lost"
        kept = shards_of(root)
        assert len(kept) >= kill_at and not (root / "texts" / "CURRENT").exists()
        deadline = time.monotonic() + 20
        while alive := [pid for pid in children if Path(f"/proc/{pid}").exists()
                        and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]:
            assert time.monotonic() < deadline, f"workers {alive} outlived their killed parent"
            time.sleep(0.2)
    final = start_index(text_embedder_dir, corpus, root, log)
    assert final.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert "resuming" in log.read_text()
    vectors, ids = vectors_and_ids(root)
    expected_vectors, expected_ids = vectors_and_ids(reference)
    assert ids == expected_ids == [f"t{i}" for i in range(ITEMS)]
    np.testing.assert_allclose(vectors, expected_vectors, atol=1e-5)
    assert not list((root / "texts" / "shards").glob("*/shard-*")), "the shards outlived the published index"
