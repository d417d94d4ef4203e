"""What a re-index job builds and how it goes live: the index family (an explicit factory, or one chosen by
the job's, the collection's or the live index's budget), the sharded build, and the publish: a FAISS version
named by CURRENT, or a Milvus version the collection's alias moves to."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence

from arcsearch.index.build import CorpusItem, FailureCallback, ProgressCallback
from arcsearch.index.chooser import IndexBudget, manifest_budget
from arcsearch.index.collections import collection_dir, staging_dir
from arcsearch.index.sharded import SHARDS_DIR, build_sharded_store, embed_sharded, remove_work
from arcsearch.index.store import IndexStore
from arcsearch.service.core.collection import LoadedCollection
from arcsearch.service.core.config import JobSettings
from arcsearch.service.core.milvus_collection import MilvusCollection
from arcsearch.service.core.served import ChangeMark, ServedCollection


def index_choice(collection: LoadedCollection, settings: JobSettings,
                 budget: IndexBudget | None) -> tuple[str | None, IndexBudget | None]:
    """(factory, budget) of the next version: a budget (the job's, else the collection's, else the live
    index's) wins and leaves the factory to the chooser (None); else the live index's factory, the
    collection's, or the service default."""
    store = collection.snapshot.store
    assert store is None or isinstance(store, IndexStore)
    budget = budget or collection.info.index_budget or (manifest_budget(store.manifest) if store else None)
    if budget is not None:
        return None, budget
    return (store.manifest.factory if store is not None
            else collection.info.index_factory or settings.index_factory), None


def rebuild_collection(collection: ServedCollection, items: Sequence[CorpusItem], *, settings: JobSettings,
                       budget: IndexBudget | None, workers: int, source: str, since: ChangeMark,
                       on_failure: FailureCallback, progress: ProgressCallback, on_resume: Callable[[int], None],
                       before_batch: Callable[[], object] | None,
                       before_publish: Callable[[], None]) -> tuple[int, str]:
    """Embed ``items`` in resumable shards, build the new version, call ``before_publish`` (a cancel check:
    publishing is not undone), publish it over the changes accepted ``since``; (items live, version id)."""
    root = settings.collections_dir
    folder = collection_dir(root, collection.name)
    embedding = {"work_root": folder / SHARDS_DIR, "batch_size": settings.batch_size,
                 "shard_items": settings.reindex_shard_items, "workers": workers,
                 "embedder_dir": folder / collection.info.embedder, "device": settings.device,
                 "on_failure": on_failure, "progress": progress, "on_resume": on_resume, "before_batch": before_batch}
    if isinstance(collection, MilvusCollection):
        sharded = embed_sharded(collection.embedder, items, **embedding)  # type: ignore[arg-type]
        before_publish()
        live_items, version = collection.publish(sharded.corpus.vectors, sharded.corpus.records, since=since,
                                                 source=source)
        remove_work(sharded.work_dir)
        return live_items, version
    assert isinstance(collection, LoadedCollection)
    factory, budget = index_choice(collection, settings, budget)
    built, sharded = build_sharded_store(collection.embedder, items, factory=factory, budget=budget, source=source,
                                         **embedding)
    before_publish()
    staged = staging_dir(root, collection.name)
    try:
        built.save(staged)
        live, version = collection.publish(root, staged, since=since, search_params=settings.search_params)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # only still there if publishing failed
    remove_work(sharded.work_dir)
    return len(live), version
