"""Embedding a corpus with an embedder bundle and building an index bundle from it.

Images come from a folder of class sub-folders or an image manifest (or inline bytes); texts from a
.jsonl/.csv/.parquet file (or inline strings); labels are optional (index.corpus). Unreadable images and
empty texts are skipped, reported and counted; a caller's failure callback decides whether too many of
them abort the build.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from tqdm import tqdm

from arcsearch.index.bundle import EmbedderManifest, IndexManifest
from arcsearch.index.chooser import IndexBudget
from arcsearch.index.corpus import CorpusError, ImageItem, TextItem, read_corpus
from arcsearch.index.embedder import load_embedder
from arcsearch.index.items import ItemRecord, check_unique_ids
from arcsearch.index.preprocess import ImageDecodeError, decode_image
from arcsearch.index.store import IndexStore

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (items done, items total)
FailureCallback = Callable[[str, str], None]  # (item id, reason); may raise to abort the build


class IndexBuildError(ValueError):
    """A corpus cannot be indexed (wrong modality for the embedder, nothing readable, ...)."""


@dataclass(frozen=True)
class InlineImage:
    """An image given as encoded bytes (an upload), not a file."""

    item_id: str
    data: bytes
    label: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


CorpusItem = ImageItem | InlineImage | TextItem


class CorpusEmbedder(Protocol):
    """What corpus embedding needs of an embedder: these, plus ``embed_images`` or ``embed_texts``."""

    manifest: EmbedderManifest

    @property
    def modality(self) -> str: ...

    @property
    def dim(self) -> int: ...


@dataclass(frozen=True)
class EmbeddedCorpus:
    """Vectors (n, d) float32, one record per row, and how many items were skipped as unreadable."""

    vectors: np.ndarray
    records: list[ItemRecord]
    skipped: int


def read_source(source: Path, modality: str) -> list[ImageItem] | list[TextItem]:
    """Read a corpus for ``modality`` (see index.corpus.read_corpus); IndexBuildError when it is unusable."""
    try:
        return read_corpus(Path(source), modality)
    except CorpusError as exc:
        raise IndexBuildError(str(exc)) from None


def _item_modality(item: CorpusItem) -> str:
    return "text" if isinstance(item, TextItem) else "image"


def log_failure(item_id: str, reason: str) -> None:
    logger.warning("skipping item %s: %s", item_id, reason)


def _embed_image_batch(embedder: Any, batch: Sequence[ImageItem | InlineImage], batch_size: int,
                       on_failure: FailureCallback) -> tuple[np.ndarray, list[ItemRecord]]:
    images: list[Image.Image] = []
    records: list[ItemRecord] = []
    for item in batch:
        try:
            images.append(decode_image(item.data if isinstance(item, InlineImage) else item.path))
        except ImageDecodeError as exc:
            on_failure(item.item_id, f"unreadable image: {exc}")
            continue
        if isinstance(item, InlineImage):
            records.append(ItemRecord(item.item_id, item.label or "", "inline", dict(item.metadata)))
        else:
            records.append(ItemRecord(item.item_id, item.label or "", item.source or item.item_id,
                                       dict(item.metadata)))
    vectors = embedder.embed_images(images, batch_size=batch_size) if images else None
    return (vectors if vectors is not None else np.zeros((0, embedder.dim), np.float32)), records


def _embed_text_batch(embedder: Any, batch: Sequence[TextItem], batch_size: int,
                      on_failure: FailureCallback) -> tuple[np.ndarray, list[ItemRecord]]:
    for item in batch:
        if not item.text.strip():
            on_failure(item.item_id, "empty text")
    batch = [item for item in batch if item.text.strip()]
    if not batch:
        return np.zeros((0, embedder.dim), np.float32), []
    vectors = embedder.embed_texts([item.text for item in batch], batch_size=batch_size)
    records = [ItemRecord(item.item_id, item.label or "", "", {**item.metadata, "text": item.text})
               for item in batch]
    return vectors, records


def check_corpus(embedder: CorpusEmbedder, items: Sequence[CorpusItem], *, batch_size: int) -> None:
    """IndexBuildError unless every item fits the embedder's modality and ``batch_size`` is positive;
    ItemTableError for a duplicate id."""
    if batch_size < 1:
        raise IndexBuildError(f"batch_size must be at least 1, got {batch_size}")
    wrong = [item.item_id for item in items if _item_modality(item) != embedder.modality]
    if wrong:
        raise IndexBuildError(f"{len(wrong)} items (e.g. {wrong[0]!r}) do not fit the {embedder.modality} "
                              "embedder")
    check_unique_ids([ItemRecord(item.item_id) for item in items])


def embed_corpus(embedder: CorpusEmbedder, items: Sequence[CorpusItem], *, batch_size: int = 64,
                 progress: ProgressCallback | None = None, show_progress: bool = True,
                 on_failure: FailureCallback | None = None,
                 before_batch: Callable[[], object] | None = None) -> EmbeddedCorpus:
    """Embed ``items`` in batches with a tqdm bar; unreadable images and empty texts are skipped and counted.

    ``before_batch()`` runs before each batch is embedded: a service passes one that waits a moment
    while queries are being answered, so that a re-index gives way to searches on the same cores.

    Each skipped item is reported to ``on_failure(item_id, reason)`` (default: a log warning); the
    callback may raise to abort the whole build (a policy such as "at most N failures").

    Text records keep the text in ``metadata["text"]``; image records name their file in ``source``.
    """
    check_corpus(embedder, items, batch_size=batch_size)
    chunks: list[np.ndarray] = []
    records: list[ItemRecord] = []
    done = 0
    with tqdm(total=len(items), desc=f"embedding {embedder.modality}s", unit="item",
              disable=not show_progress) as bar:
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            report = on_failure or log_failure
            if before_batch is not None:
                before_batch()
            if embedder.modality == "image":
                vectors, batch_records = _embed_image_batch(embedder, batch, batch_size, report)  # type: ignore[arg-type]
            else:
                vectors, batch_records = _embed_text_batch(embedder, batch, batch_size, report)  # type: ignore[arg-type]
            chunks.append(vectors)
            records.extend(batch_records)
            done += len(batch)
            bar.update(len(batch))
            if progress is not None:
                progress(done, len(items))
    skipped = len(items) - len(records)
    if skipped:
        logger.warning("skipped %d of %d items that could not be read", skipped, len(items))
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, embedder.dim), np.float32)
    return EmbeddedCorpus(vectors=vectors.astype(np.float32, copy=False), records=records, skipped=skipped)


def build_store(embedder: CorpusEmbedder, items: Sequence[CorpusItem], *, factory: str | None = "Flat",
                budget: IndexBudget | None = None, batch_size: int = 64,
                source: str = "", progress: ProgressCallback | None = None, show_progress: bool = True,
                on_failure: FailureCallback | None = None,
                before_batch: Callable[[], object] | None = None) -> tuple[IndexStore, EmbeddedCorpus]:
    """Embed ``items`` and build an in-memory IndexStore with ``factory`` (None: chosen by ``budget``, see
    index/chooser.py); returns it with the embedded corpus (``before_batch``: see ``embed_corpus``)."""
    corpus = embed_corpus(embedder, items, batch_size=batch_size, progress=progress,
                          show_progress=show_progress, on_failure=on_failure, before_batch=before_batch)
    return store_from_corpus(embedder, corpus, factory=factory, budget=budget, source=source), corpus


def store_from_corpus(embedder: CorpusEmbedder, corpus: EmbeddedCorpus, *, factory: str | None = "Flat",
                      budget: IndexBudget | None = None, source: str = "") -> IndexStore:
    """An in-memory IndexStore of an embedded corpus (``factory``, or when None one chosen by ``budget``);
    IndexBuildError if no item could be read."""
    if not corpus.records:
        raise IndexBuildError(f"none of the {corpus.skipped} items could be read; nothing to index")
    return IndexStore.build(corpus.vectors, corpus.records, modality=embedder.modality,
                            embedder_sha256=embedder.manifest.weights_sha256, factory=factory, budget=budget,
                            source=source)


def build_index_bundle(embedder_dir: Path, source: Path, out_dir: Path, *, factory: str | None = "Flat",
                       budget: IndexBudget | None = None, batch_size: int = 64, device: str = "auto") -> IndexManifest:
    """Embed ``source`` with the embedder bundle at ``embedder_dir`` and save an index bundle to ``out_dir``.

    ``source`` is an image folder (class sub-folders) or a .jsonl/.csv text file, as the embedder's
    modality requires. ``out_dir`` must not exist yet; it appears complete or not at all. ``factory`` None:
    the index is chosen by ``budget`` (index/chooser.py).
    """
    embedder = load_embedder(Path(embedder_dir), device=device)
    items = read_source(Path(source), embedder.modality)
    logger.info("indexing %d %s items from %s with factory %r", len(items), embedder.modality, source, factory)
    store, corpus = build_store(embedder, items, factory=factory, budget=budget, batch_size=batch_size,
                                source=str(Path(source).resolve()))  # absolute: servers may run elsewhere
    store.save(Path(out_dir))
    logger.info("index bundle %s: %d items, %d skipped", out_dir, len(store), corpus.skipped)
    return store.manifest
