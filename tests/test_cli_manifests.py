"""``arcsearch index`` from manifests: image paths with ids and metadata, texts in Parquet, labels optional; a bad
manifest (missing column, missing file, duplicate id) exits 2 with a message naming the problem and publishes
nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from arcsearch.cli import main
from arcsearch.index.collections import current_index_dir, current_version
from arcsearch.index.store import IndexStore
from tests import bundles
from tests.bundles import write_table


@pytest.fixture(scope="module")
def embedders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {"image": bundles.image_embedder(root), "text": bundles.text_embedder(root)}


@pytest.fixture()
def catalogue(tmp_path: Path) -> Path:
    """``catalogue/`` with photos/face{1,2,3}.pgm."""
    photos = tmp_path / "catalogue" / "photos"
    photos.mkdir(parents=True)
    for n in (1, 2, 3):
        shutil.copy(bundles.prepared().faces_dir / "s7" / f"{n}.pgm", photos / f"face{n}.pgm")
    return tmp_path / "catalogue"


def index(embedder: Path, source: Path, root: Path) -> int:
    return main(["index", "--collection", "c", "--embedder", str(embedder), "--source", str(source),
                 "--collections-dir", str(root), "--device", "cpu", "--shard-items", "2", "--batch-size", "2"])


def records(root: Path) -> dict[str, tuple[str, dict]]:
    store = IndexStore.load(current_index_dir(root, "c"))
    return {r.external_id: (r.label, r.metadata) for r in store.items.iter_records()}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_image_manifest_with_ids_metadata_and_no_labels(embedders: dict[str, Path], catalogue: Path, tmp_path: Path,
                                                        suffix: str) -> None:
    rows = [{"path": f"photos/face{n}.pgm", "id": f"sku-{n}", "price": str(n * 10)} for n in (1, 2, 3)]
    manifest = write_table(catalogue / f"catalogue{suffix}", rows)
    assert index(embedders["image"], manifest, tmp_path / "collections") == 0
    found = records(tmp_path / "collections")
    assert sorted(found) == ["sku-1", "sku-2", "sku-3"] and found["sku-2"] == ("", {"price": "20"})


def test_text_parquet_with_and_without_labels(embedders: dict[str, Path], tmp_path: Path) -> None:
    rows = [{"id": f"t{i}", "text": f"a short text number {i}", "source_url": f"u{i}"} for i in range(5)]
    rows[0]["label"] = "first"
    assert index(embedders["text"], write_table(tmp_path / "texts.parquet", rows), tmp_path / "collections") == 0
    found = records(tmp_path / "collections")
    assert found["t0"][0] == "first" and found["t3"] == ("", {"source_url": "u3", "text": "a short text number 3"})


@pytest.mark.parametrize(("rows", "message"), [
    ([{"file": "photos/face1.pgm"}], "has no 'path' column"),
    ([{"path": "photos/face1.pgm"}, {"path": "photos/nope.pgm"}], "row 2: image file 'photos/nope.pgm' does not exist"),
    ([{"path": "photos/face1.pgm", "id": "x"}, {"path": "photos/face2.pgm", "id": "x"}], "row 2: id 'x' is already"),
])
def test_a_bad_manifest_exits_2_and_changes_nothing(embedders: dict[str, Path], catalogue: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture, rows: list[dict],
                                                    message: str) -> None:
    root = tmp_path / "collections"
    good = write_table(catalogue / "good.csv", [{"path": "photos/face1.pgm", "id": "kept"}])
    assert index(embedders["image"], good, root) == 0
    version = current_version(root, "c")
    assert index(embedders["image"], write_table(catalogue / "bad.csv", rows), root) == 2
    assert message in caplog.text
    assert current_version(root, "c") == version and sorted(records(root)) == ["kept"]
    assert not list((root / "c" / "staging").iterdir())
