"""index.collections: layout, atomic publish, crash safety (a half-written version is never CURRENT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from arcsearch.index import collections as coll
from arcsearch.index.bundle import BundleError, read_embedder_manifest
from arcsearch.index.items import ItemRecord
from arcsearch.index.store import IndexStore
from tests.bundles import REPO, fake_embedder_bundle, glosses_by_class, unit_vectors, write_jsonl

DIM = 8


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """A collections folder holding one text collection ``docs`` (fake 8-d embedder), never published."""
    collections = tmp_path / "collections"
    coll.create_collection(collections, "docs", fake_embedder_bundle(tmp_path / "embedder", dim=DIM))
    return collections


def stage(root: Path, n: int = 20, *, seed: int = 0, sha: str | None = None) -> Path:
    """Write a complete index bundle for ``docs`` into a fresh staging folder."""
    info = coll.read_collection(root, "docs")
    store = IndexStore.build(unit_vectors(n, DIM, seed=seed), [ItemRecord(f"v{seed}-{i}") for i in range(n)],
                             modality="text", embedder_sha256=sha or info.embedder_sha256)
    return store.save(coll.staging_dir(root, "docs"))


def live_ids(root: Path) -> set[str]:
    store = IndexStore.load(coll.current_index_dir(root, "docs"))
    return {record.external_id for record in store.items.iter_records()}


def test_create_collection_copies_the_embedder_and_is_idempotent(root: Path, tmp_path: Path) -> None:
    folder = root / "docs"
    info = coll.read_collection(root, "docs")
    assert (info.name, info.modality, info.embedding_dim) == ("docs", "text", DIM)
    assert read_embedder_manifest(folder / "embedder").weights_sha256 == info.embedder_sha256
    assert coll.create_collection(root, "docs", tmp_path / "embedder") == folder
    other = fake_embedder_bundle(tmp_path / "other", dim=DIM, seed=1)
    with pytest.raises(coll.CollectionError, match="use a new collection"):
        coll.create_collection(root, "docs", other)
    assert [c.name for c in coll.list_collections(root)] == ["docs"]
    assert coll.current_version(root, "docs") is None
    with pytest.raises(coll.CollectionError, match="no published index"):
        coll.current_index_dir(root, "docs")


@pytest.mark.parametrize("name", ["../up", "Upper", "a/b", "", ".hidden", "x" * 65])
def test_collection_names_are_plain_slugs(tmp_path: Path, name: str) -> None:
    with pytest.raises(coll.CollectionError, match="must match"):
        coll.create_collection(tmp_path, name, fake_embedder_bundle(tmp_path / "e"))


def test_embedder_with_tampered_weights_is_refused(tmp_path: Path) -> None:
    bundle = fake_embedder_bundle(tmp_path / "e")
    (bundle / "model" / "weights.bin").write_bytes(b"changed")
    with pytest.raises(BundleError, match="weights hash"):
        coll.create_collection(tmp_path / "c", "docs", bundle)


def test_publish_switches_current_and_keeps_two_versions(root: Path) -> None:
    versions = [coll.publish_version(root, "docs", stage(root, seed=s)) for s in range(4)]
    assert versions == sorted(versions)
    assert coll.current_version(root, "docs") == versions[-1]
    assert coll.list_versions(root, "docs") == versions[-2:]
    assert live_ids(root) == {f"v3-{i}" for i in range(20)}
    assert list((root / "docs" / "staging").iterdir()) == []


def test_publish_takes_a_version_id_prepared_beforehand(root: Path) -> None:
    prepared = coll.new_version_id()  # e.g. changes were written under it before it went live
    assert coll.publish_version(root, "docs", stage(root, seed=0), version=prepared) == prepared
    assert coll.current_version(root, "docs") == prepared
    with pytest.raises(coll.CollectionError, match="not a version id"):
        coll.publish_version(root, "docs", stage(root, seed=1), version="../elsewhere")
    assert coll.current_version(root, "docs") == prepared


def test_incomplete_or_foreign_bundles_are_never_published(root: Path) -> None:
    first = coll.publish_version(root, "docs", stage(root, seed=0))
    half = coll.staging_dir(root, "docs")
    half.mkdir()
    (half / "index.faiss").write_bytes(b"half an index")  # a crash before the manifest was written
    with pytest.raises(BundleError, match="manifest.json is missing"):
        coll.publish_version(root, "docs", half)
    with pytest.raises(coll.CollectionError, match="built with embedder"):
        coll.publish_version(root, "docs", stage(root, seed=1, sha="0" * 64))
    assert coll.current_version(root, "docs") == first
    assert coll.list_versions(root, "docs") == [first]


@pytest.mark.parametrize("step", ["fsync_tree", "fsync_dir", "write_text_atomic"])
def test_crash_at_any_publish_step_keeps_the_old_version(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                         step: str) -> None:
    first = coll.publish_version(root, "docs", stage(root, seed=0))
    staged = stage(root, seed=1)

    def crash(*_args: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(coll, step, crash)
    with pytest.raises(OSError, match="power cut"):
        coll.publish_version(root, "docs", staged)
    assert coll.current_version(root, "docs") == first
    assert live_ids(root) == {f"v0-{i}" for i in range(20)}
    monkeypatch.undo()
    second = coll.publish_version(root, "docs", stage(root, seed=2))
    assert coll.current_version(root, "docs") == second and second in coll.list_versions(root, "docs")


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import arcsearch.index.store as store_module
    from arcsearch.index import collections as coll
    from arcsearch.index.items import ItemRecord
    from arcsearch.index.store import IndexStore
    from tests.bundles import unit_vectors

    root = Path(sys.argv[1])
    real_write_items = store_module.write_items

    def slow_write_items(path, records):  # the index file is written, the item table hangs half-way
        path.write_bytes(b"SQLite format 3")
        print("HALF-WRITTEN", flush=True)
        time.sleep(60)

    store_module.write_items = slow_write_items
    info = coll.read_collection(root, "docs")
    store = IndexStore.build(unit_vectors(50, 8, seed=9), [ItemRecord(f"new-{i}") for i in range(50)],
                             modality="text", embedder_sha256=info.embedder_sha256)
    coll.publish_version(root, "docs", store.save(coll.staging_dir(root, "docs")))
""")


def test_process_killed_while_writing_a_version_leaves_current_intact(root: Path) -> None:
    first = coll.publish_version(root, "docs", stage(root, seed=0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(root)], stdout=subprocess.PIPE, env=env,
                            cwd=REPO, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "HALF-WRITTEN"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert coll.current_version(root, "docs") == first
    assert coll.list_versions(root, "docs") == [first]
    assert live_ids(root) == {f"v0-{i}" for i in range(20)}
    leftovers = list((root / "docs" / "staging").iterdir())
    assert leftovers and all(p.name.startswith(".") for p in leftovers)  # only the hidden partial folder
    old = time.time() - coll.STALE_STAGING_S - 60
    for path in leftovers:
        os.utime(path, (old, old))
    coll.cleanup_versions(root, "docs")
    assert list((root / "docs" / "staging").iterdir()) == []
    second = coll.publish_version(root, "docs", stage(root, seed=1))
    assert coll.current_version(root, "docs") == second


def test_index_collection_builds_and_publishes_in_one_call(text_embedder_dir: Path, tmp_path: Path) -> None:
    rows = [row for group in glosses_by_class(3, 3).values() for row in group]
    source = write_jsonl(tmp_path / "t.jsonl", rows)
    root = tmp_path / "collections"
    manifest = coll.index_collection(root, "texts", text_embedder_dir, source, device="cpu")
    assert manifest.num_items == 9
    first = coll.current_version(root, "texts")
    coll.index_collection(root, "texts", text_embedder_dir, write_jsonl(tmp_path / "u.jsonl", rows[:4]),
                          device="cpu")
    assert coll.current_version(root, "texts") != first
    assert IndexStore.load(coll.current_index_dir(root, "texts")).manifest.num_items == 4
    assert len(coll.list_versions(root, "texts")) == 2
