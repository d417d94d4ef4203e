"""Indexing a collection into Milvus offline (``arcsearch index --backend milvus``): the collection's folder gets
collection.json (``backend: milvus``) and its embedder copy, the vectors and items go to Milvus, whose alias then
names the new version (index.milvus_store). Run again, it re-indexes with an alias swap."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from arcsearch.index.collections import EMBEDDER_DIR, create_collection, read_collection
from arcsearch.index.embedder import load_embedder
from arcsearch.index.milvus_store import MilvusStore
from arcsearch.index.shard_workers import default_workers
from arcsearch.index.sharded import DEFAULT_SHARD_ITEMS, SHARDS_DIR, embed_sharded, read_source, remove_work

if TYPE_CHECKING:
    from pymilvus import MilvusClient

logger = logging.getLogger(__name__)


def index_milvus_collection(collections_dir: Path, name: str, embedder_dir: Path, source: Path,
                            client: MilvusClient, *, batch_size: int = 64, device: str = "auto",
                            workers: int | None = None, shard_items: int | None = None) -> MilvusStore:
    """Create (or reuse) Milvus collection ``name`` with its embedder, embed ``source`` in resumable shards under
    ``<name>/shards/``, and make it the live version (first build, or a re-index by alias swap)."""
    folder = create_collection(collections_dir, name, embedder_dir, backend="milvus")
    info = read_collection(collections_dir, name)
    embedder = load_embedder(folder / EMBEDDER_DIR, device=device)
    items = read_source(Path(source), embedder.modality)
    sharded = embed_sharded(embedder, items, work_root=folder / SHARDS_DIR, batch_size=batch_size,
                            shard_items=shard_items or DEFAULT_SHARD_ITEMS, workers=workers or default_workers(device),
                            embedder_dir=folder / EMBEDDER_DIR, device=device, show_progress=True)
    corpus, where = sharded.corpus, str(Path(source).resolve())
    if MilvusStore.exists(client, name):
        store = MilvusStore.open(client, name)
        store.reindex(corpus.vectors, corpus.records, embedder_sha256=info.embedder_sha256, source=where)
    else:
        store = MilvusStore.create(client, name, corpus.vectors, corpus.records, modality=info.modality,
                                   embedder_sha256=info.embedder_sha256, source=where)
    remove_work(sharded.work_dir)
    logger.info("collection %r in Milvus: %d items (%d skipped), version %s", name, len(corpus.records),
                corpus.skipped, store.version)
    return store
