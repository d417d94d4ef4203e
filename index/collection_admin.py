"""Adding and removing whole collections while a server runs (index.collections holds the on-disk layout).

A new collection gets a copy of its embedder bundle and, when its FAISS factory needs no training, an
empty published version, so it can be searched and filled by upserts at once. A removed collection's
folder is first renamed to a hidden ``.deleted-<name>-<token>`` (atomic: a restart never sees half a
collection), then deleted; ``purge_deleted`` finishes removals a crash interrupted.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from pathlib import Path

from arcsearch.index.bundle import read_embedder_manifest
from arcsearch.index.bundle_files import bundle_files
from arcsearch.index.chooser import IndexBudget
from arcsearch.index.collections import (
    COLLECTION_FILE,
    Backend,
    CollectionError,
    CollectionInfo,
    collection_dir,
    collection_lock,
    create_collection,
    publish_version,
    read_collection,
    staging_dir,
)
from arcsearch.index.durable import fsync_dir
from arcsearch.index.faiss_index import check_factory
from arcsearch.index.store import IndexStore

logger = logging.getLogger(__name__)

DELETED_PREFIX = ".deleted-"


class CollectionExistsError(CollectionError):
    """A collection of that name already exists."""


def new_collection(collections_dir: Path, name: str, embedder_dir: Path, *, factory: str,
                   budget: IndexBudget | None = None, backend: Backend = "faiss") -> CollectionInfo:
    """Create collection ``name`` with the embedder bundle at ``embedder_dir`` and FAISS ``factory`` (or, with
    ``budget``, an empty ``factory`` version now and an index chosen by the budget at each re-index).

    Raises CollectionExistsError if it exists, BundleError for a folder that is not an embedder bundle (or
    holds a link, a special file, or more than MAX_BUNDLE_BYTES), IndexStoreError for a bad factory.
    A factory that needs no training (Flat, HNSW32, ...) gets an empty live version at once; one that
    does (IVF..., PQ...) is trained by the collection's first re-index. A ``milvus`` collection gets only its
    folder here (collection.json and the embedder): the caller creates its Milvus collection.
    """
    folder = collection_dir(collections_dir, name)
    if (folder / COLLECTION_FILE).exists():
        raise CollectionExistsError(f"collection {name!r} already exists")
    manifest = read_embedder_manifest(Path(embedder_dir))  # its weights_file is a name inside the folder
    bundle_files(Path(embedder_dir))  # a link, a special file or too many bytes: refused before anything is written
    needs_training = check_factory(manifest.embedding_dim, factory)
    create_collection(collections_dir, name, embedder_dir, index_factory=None if budget else factory,
                      index_budget=budget, backend=backend)
    if backend == "faiss" and not needs_training:
        staged = staging_dir(collections_dir, name)
        try:
            IndexStore.empty(manifest.embedding_dim, modality=manifest.modality,
                             embedder_sha256=manifest.weights_sha256, factory=factory).save(staged)
            publish_version(collections_dir, name, staged)
        finally:
            shutil.rmtree(staged, ignore_errors=True)  # only left if publishing failed
    return read_collection(collections_dir, name)


def remove_collection(collections_dir: Path, name: str) -> None:
    """Delete collection ``name`` and all its versions (rename out of sight first, then remove)."""
    folder = collection_dir(collections_dir, name)
    read_collection(collections_dir, name)  # raises CollectionNotFoundError
    trash = Path(collections_dir) / f"{DELETED_PREFIX}{name}-{secrets.token_hex(4)}"
    with collection_lock(collections_dir, name):  # waits for a publish in progress
        folder.rename(trash)
        fsync_dir(Path(collections_dir))
    shutil.rmtree(trash, ignore_errors=True)
    logger.info("removed collection %r", name)


def purge_deleted(collections_dir: Path) -> list[str]:
    """Finish removals a crash interrupted (hidden ``.deleted-*`` folders); returns the folders removed."""
    root = Path(collections_dir)
    leftovers = sorted(p for p in root.glob(f"{DELETED_PREFIX}*") if p.is_dir()) if root.is_dir() else []
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in leftovers]
