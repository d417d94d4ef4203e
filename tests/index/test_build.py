"""index.build: corpus embedding (fake embedder) and whole index bundles (real embedders)."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest

from arcsearch.index.build import IndexBuildError, InlineImage, build_index_bundle, build_store, embed_corpus
from arcsearch.index.bundle import EmbedderManifest, read_index_manifest
from arcsearch.index.corpus import TextItem
from arcsearch.index.embedder import load_embedder
from arcsearch.index.store import IndexStore
from tests.bundles import glosses_by_class, write_jsonl


class FakeTextEmbedder:
    """Deterministic 8-d vectors from a hash of each text; counts its calls."""

    modality = "text"
    dim = 8
    manifest = EmbedderManifest(modality="text", embedding_dim=8, weights_file="model", weights_sha256="f" * 64)

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed_texts(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        self.batches.append(len(texts))
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:32], np.uint8)[:8] for t in texts]
        vectors = np.asarray(rows, np.float32) + 1.0
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def texts(n: int) -> list[TextItem]:
    return [TextItem(f"t{i}", f"text number {i}", f"label{i % 3}", {"extra": i}) for i in range(n)]


def test_embed_corpus_batches_reports_progress_and_keeps_texts() -> None:
    embedder, seen = FakeTextEmbedder(), []
    corpus = embed_corpus(embedder, texts(10), batch_size=4, progress=lambda d, t: seen.append((d, t)),
                          show_progress=False)
    assert embedder.batches == [4, 4, 2]
    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert corpus.vectors.shape == (10, 8) and corpus.vectors.dtype == np.float32
    assert corpus.skipped == 0
    assert corpus.records[3].metadata == {"extra": 3, "text": "text number 3"}


def test_before_batch_runs_before_each_batch_is_embedded() -> None:
    embedder, calls = FakeTextEmbedder(), []
    original = embedder.embed_texts

    def embed(batch: list[str], **kwargs: object) -> object:
        calls.append(("embed", len(batch)))
        return original(batch, **kwargs)

    embedder.embed_texts = embed  # type: ignore[method-assign]
    embed_corpus(embedder, texts(10), batch_size=4, show_progress=False,
                 before_batch=lambda: calls.append(("wait", 0)))
    assert calls == [("wait", 0), ("embed", 4), ("wait", 0), ("embed", 4), ("wait", 0), ("embed", 2)]


def test_embed_corpus_refuses_other_modality_and_duplicate_ids() -> None:
    with pytest.raises(IndexBuildError, match="do not fit the text embedder"):
        embed_corpus(FakeTextEmbedder(), [InlineImage("x", b"")], show_progress=False)
    with pytest.raises(ValueError, match="more than once"):
        embed_corpus(FakeTextEmbedder(), texts(2) + texts(1), show_progress=False)


def test_failed_items_go_to_the_callback_which_may_abort() -> None:
    items = texts(3) + [TextItem("blank", "   ", "x")] + texts(6)[3:]
    failures: list[tuple[str, str]] = []
    corpus = embed_corpus(FakeTextEmbedder(), items, batch_size=2, show_progress=False,
                          on_failure=lambda item_id, reason: failures.append((item_id, reason)))
    assert failures == [("blank", "empty text")] and corpus.skipped == 1 and len(corpus.records) == 6

    def abort(item_id: str, reason: str) -> None:
        raise RuntimeError(f"too many: {item_id}")

    with pytest.raises(RuntimeError, match="too many: blank"):
        embed_corpus(FakeTextEmbedder(), items, show_progress=False, on_failure=abort)


def test_build_store_from_fake_embedder_finds_each_text_itself() -> None:
    store, _ = build_store(FakeTextEmbedder(), texts(30), show_progress=False)
    hits = store.search(FakeTextEmbedder().embed_texts(["text number 7"]), 1)
    assert hits[0][0].external_id == "t7"
    assert store.manifest.embedder_sha256 == "f" * 64


def test_image_bundle_skips_unreadable_files_and_counts_them(small_faces: Path, image_embedder_dir: Path,
                                                            tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    with caplog.at_level(logging.WARNING, logger="arcsearch.index.build"):
        manifest = build_index_bundle(image_embedder_dir, small_faces, tmp_path / "idx", device="cpu",
                                      batch_size=4)
    assert manifest.num_items == 9 and manifest.modality == "image" and manifest.embedding_dim == 128
    assert "skipped 2 of 11 items" in caplog.text
    assert "s1/broken.png" in caplog.text and "s2/notes.jpg" in caplog.text
    assert read_index_manifest(tmp_path / "idx") == manifest
    embedder = load_embedder(image_embedder_dir, device="cpu")
    assert manifest.embedder_sha256 == embedder.manifest.weights_sha256
    from arcsearch.index.preprocess import decode_image

    query = embedder.embed_images([decode_image(small_faces / "s2" / "3.pgm")])
    (hits,) = IndexStore.load(tmp_path / "idx").search(query, 3)
    assert hits[0].external_id == "s2/3.pgm" and hits[0].source == "s2/3.pgm"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_all_unreadable_images_is_an_error(image_embedder_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "x.png").write_bytes(b"nope")
    with pytest.raises(IndexBuildError, match="none of the 1 items"):
        build_index_bundle(image_embedder_dir, tmp_path / "src", tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_text_bundle_from_jsonl_or_csv(text_embedder_dir: Path, tmp_path: Path, suffix: str) -> None:
    rows = [row for group in glosses_by_class(4, 3).values() for row in group]
    source = tmp_path / f"texts{suffix}"
    if suffix == ".jsonl":
        write_jsonl(source, rows)
    else:
        with source.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "text", "label", "lemmas"])
            writer.writeheader()
            writer.writerows(rows)
    manifest = build_index_bundle(text_embedder_dir, source, tmp_path / "idx", device="cpu")
    assert (manifest.num_items, manifest.modality, manifest.embedding_dim) == (12, "text", 384)
    embedder = load_embedder(text_embedder_dir, device="cpu")
    (hits,) = IndexStore.load(tmp_path / "idx").search(embedder.embed_texts([rows[5]["text"]]), 1)
    assert hits[0].external_id == rows[5]["id"] and hits[0].metadata["text"] == rows[5]["text"]


def test_source_must_fit_the_embedder(image_embedder_dir: Path, text_embedder_dir: Path, tmp_path: Path,
                                      small_faces: Path) -> None:
    jsonl = write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": "b"}])
    with pytest.raises(IndexBuildError, match="row 1: 'path' is missing"):  # read as an image manifest
        build_index_bundle(image_embedder_dir, jsonl, tmp_path / "o1", device="cpu")
    with pytest.raises(IndexBuildError, match=r"a text corpus is a .jsonl, .csv or .parquet file"):
        build_index_bundle(text_embedder_dir, small_faces, tmp_path / "o2", device="cpu")
