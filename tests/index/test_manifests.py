"""Corpus manifests (CSV, JSONL, Parquet) of image paths or texts: labels, ids and metadata optional, every
bad manifest refused whole with the row that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from arcsearch.index.corpus import (
    CorpusError,
    read_corpus,
    read_image_manifest,
    read_text_file,
    require_labels,
)
from tests.bundles import write_table

ROWS = [
    {"path": "img/a.png", "id": "sku-1", "label": "shoe", "colour": "red"},
    {"path": "img/b.png", "id": "sku-2", "colour": "blue"},  # no label
    {"path": "img/sub/c.png", "label": "hat"},  # no id: the path is the id
]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    for name in ("img/a.png", "img/b.png", "img/sub/c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_an_image_manifest_gives_ids_labels_metadata_and_sources(images: Path, suffix: str) -> None:
    items = read_image_manifest(write_table(images / f"catalogue{suffix}", ROWS))
    assert [(i.item_id, i.label, i.source) for i in items] == [
        ("sku-1", "shoe", "img/a.png"), ("sku-2", None, "img/b.png"), ("img/sub/c.png", "hat", "img/sub/c.png")]
    assert [i.path for i in items] == [(images / r["path"]).resolve() for r in ROWS]
    assert items[0].metadata == {"colour": "red"} and items[1].metadata == {"colour": "blue"}
    assert read_corpus(images / f"catalogue{suffix}", "image") == items


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_text_manifest_needs_no_label(tmp_path: Path, suffix: str) -> None:
    rows = [{"text": "red running shoe", "id": "p1", "brand": "x"}, {"text": "straw hat", "label": "hats"}]
    items = read_text_file(write_table(tmp_path / f"texts{suffix}", rows))
    assert [(i.item_id, i.text, i.label) for i in items] == [
        ("p1", "red running shoe", None), ("2", "straw hat", "hats")]
    assert items[0].metadata == {"brand": "x"}
    with pytest.raises(CorpusError, match="training needs a label on every item; item 'p1' has none"):
        require_labels(items)
    assert require_labels(items[1:]) == ["hats"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_missing_column_is_named_with_the_columns_found(images: Path, suffix: str) -> None:
    manifest = write_table(images / f"m{suffix}", [{"file": "img/a.png", "label": "shoe"}])
    with pytest.raises(CorpusError, match=r"has no 'path' column \(its columns: file, label\)"):
        read_image_manifest(manifest)


@pytest.mark.parametrize(("rows", "message"), [
    ([{"path": "img/a.png"}, {"path": "img/missing.png"}], "row 2: image file 'img/missing.png' does not exist"),
    ([{"path": "img/a.png", "id": "x"}, {"path": "img/b.png", "id": "x"}],
     "row 2: id 'x' is already used by row 1"),
    ([{"path": "img/a.png"}, {"label": "shoe"}], "row 2: 'path' is missing"),
    ([{"path": "img/a.png", "label": {"a": 1}}], "row 1: 'label' must be text"),
])
def test_bad_image_manifests_are_refused_naming_the_row(images: Path, rows: list[dict], message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        read_image_manifest(write_table(images / "m.jsonl", rows))


def test_paths_outside_the_confining_root_are_refused(images: Path, tmp_path_factory: pytest.TempPathFactory
                                                      ) -> None:
    outside = tmp_path_factory.mktemp("outside") / "x.png"
    Image.new("RGB", (4, 4)).save(outside)
    manifest = write_table(images / "m.jsonl", [{"path": "img/a.png"}, {"path": str(outside)}])
    assert len(read_image_manifest(manifest)) == 2
    with pytest.raises(CorpusError, match="row 2: image file .* lies outside the data root"):
        read_image_manifest(manifest, confine_to=images)


def test_a_file_that_is_no_parquet_is_a_corpus_error(tmp_path: Path) -> None:
    (tmp_path / "m.parquet").write_text("path\nimg/a.png\n")
    with pytest.raises(CorpusError, match="not a readable Parquet file"):
        read_image_manifest(tmp_path / "m.parquet")
