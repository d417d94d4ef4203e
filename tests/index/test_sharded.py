"""Resumable sharded embedding: the same vectors as the unsharded path, resume from finished shards only,
no stale shards after a change, worker processes, and a work folder used by one build at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arcsearch.index.build import IndexBuildError, embed_corpus, read_source
from arcsearch.index.corpus import TextItem
from arcsearch.index.embedder import load_embedder
from arcsearch.index.shard_files import locked_work_root
from arcsearch.index.sharded import embed_sharded, shard_size
from tests import bundles


@pytest.fixture(scope="module")
def text_embedder(text_embedder_dir: Path) -> Any:
    return load_embedder(text_embedder_dir, device="cpu")


@pytest.fixture(scope="module")
def texts() -> list[TextItem]:
    lines = bundles.prepared().texts_file.read_text(encoding="utf-8").splitlines()[:130]
    rows = [json.loads(line) for line in lines]
    return [TextItem(item_id=f"t{i}", text=row["text"], label=row["label"] if i % 2 else None)
            for i, row in enumerate(rows)]


class CountingEmbedder:
    """The real embedder, counting the texts it embeds."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.manifest, self.embedded = inner, inner.manifest, 0

    modality = property(lambda self: self.inner.modality)
    dim = property(lambda self: self.inner.dim)

    def embed_texts(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        self.embedded += len(texts)
        return self.inner.embed_texts(texts, batch_size=batch_size)


def test_shard_size_is_a_whole_number_of_batches() -> None:
    assert (shard_size(40, 16), shard_size(48, 16), shard_size(1, 16)) == (48, 48, 16)
    with pytest.raises(IndexBuildError):
        shard_size(0, 16)


def test_sharded_vectors_equal_the_unsharded_ones(text_embedder: Any, texts: list[TextItem], tmp_path: Path) -> None:
    plain = embed_corpus(text_embedder, texts, batch_size=16, show_progress=False)
    sharded = embed_sharded(text_embedder, texts, work_root=tmp_path / "work", batch_size=16, shard_items=40)
    assert [r.external_id for r in sharded.corpus.records] == [r.external_id for r in plain.records]
    assert [r.label for r in sharded.corpus.records] == [r.label for r in plain.records]
    np.testing.assert_array_equal(sharded.corpus.vectors, plain.vectors)
    assert sharded.resumed_items == 0 and len(list(sharded.work_dir.glob("shard-*.json"))) == 3


def test_a_second_run_embeds_only_the_missing_shards(text_embedder: Any, texts: list[TextItem], tmp_path: Path) -> None:
    first = embed_sharded(text_embedder, texts, work_root=tmp_path / "work", batch_size=16, shard_items=48)
    (first.work_dir / "shard-000001.json").unlink()  # as if killed before shard 1's marker was renamed in
    (first.work_dir / ".shard-000002.npy.123.tmp").write_bytes(b"torn")  # a write cut short
    counting = CountingEmbedder(text_embedder)
    done: list[int] = []
    again = embed_sharded(counting, texts, work_root=tmp_path / "work", batch_size=16, shard_items=48,
                          progress=lambda d, _t: done.append(d))
    assert counting.embedded == 48 and again.resumed_items == len(texts) - 48
    assert done[0] == len(texts) - 48 and done[-1] == len(texts)
    assert [r.external_id for r in again.corpus.records] == [t.item_id for t in texts]
    np.testing.assert_array_equal(again.corpus.vectors, first.corpus.vectors)


def test_a_changed_corpus_or_batch_size_never_resumes_from_stale_shards(text_embedder: Any, texts: list[TextItem],
                                                                        tmp_path: Path) -> None:
    first = embed_sharded(text_embedder, texts, work_root=tmp_path / "work", batch_size=16, shard_items=48)
    changed = [*texts[:-1], TextItem(item_id=texts[-1].item_id, text=texts[-1].text + " changed")]
    counting = CountingEmbedder(text_embedder)
    second = embed_sharded(counting, changed, work_root=tmp_path / "work", batch_size=16, shard_items=48)
    assert second.resumed_items == 0 and counting.embedded == len(texts)
    assert not first.work_dir.exists() and second.work_dir != first.work_dir
    third = embed_sharded(counting, changed, work_root=tmp_path / "work", batch_size=8, shard_items=48)
    assert third.resumed_items == 0


def test_worker_processes_give_the_same_index(text_embedder: Any, text_embedder_dir: Path, texts: list[TextItem],
                                              tmp_path: Path) -> None:
    plain = embed_corpus(text_embedder, texts, batch_size=16, show_progress=False)
    sharded = embed_sharded(text_embedder, texts, work_root=tmp_path / "work", batch_size=16, shard_items=32,
                            workers=2, embedder_dir=text_embedder_dir, device="cpu")
    assert [r.external_id for r in sharded.corpus.records] == [r.external_id for r in plain.records]
    np.testing.assert_allclose(sharded.corpus.vectors, plain.vectors, atol=1e-5)


def test_one_build_at_a_time_per_work_folder(text_embedder: Any, texts: list[TextItem], tmp_path: Path) -> None:
    with locked_work_root(tmp_path / "work"), pytest.raises(IndexBuildError, match="another re-index"):
        embed_sharded(text_embedder, texts, work_root=tmp_path / "work", batch_size=16)


def test_failed_items_are_reported_again_when_resumed(image_embedder_dir: Path, small_faces: Path,
                                                      tmp_path: Path) -> None:
    embedder = load_embedder(image_embedder_dir, device="cpu")
    items = read_source(small_faces, "image")
    reports: list[list[str]] = [[], []]
    for seen in reports:
        sharded = embed_sharded(embedder, items, work_root=tmp_path / "work", batch_size=4, shard_items=4,
                                on_failure=lambda item_id, _reason, seen=seen: seen.append(item_id))
    assert sorted(reports[0]) == sorted(reports[1]) == ["s1/broken.png", "s2/notes.jpg"]
    assert sharded.resumed_items == len(items) and sharded.corpus.skipped == 2
    assert len(sharded.corpus.records) == 9
