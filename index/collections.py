"""Collections: an embedder plus versions of its index, with an atomic switch of the live version.

Layout::

    <collections_dir>/<name>/collection.json       name, modality, embedder path and hash
    <collections_dir>/<name>/embedder/             a copy of the embedder bundle
    <collections_dir>/<name>/versions/<version>/   index bundles, written once
    <collections_dir>/<name>/staging/<version>/    versions being built (never read by a server)
    <collections_dir>/<name>/CURRENT               the live version's id, replaced with os.replace

A version is renamed into ``versions/`` only when complete and fsynced, and CURRENT names it only
after that, so a crash at any point leaves CURRENT naming a complete version (or none yet). A collection of
``backend: milvus`` has only collection.json and its embedder here: its versions live in Milvus
(index.milvus_store), behind an alias that moves atomically.
"""

from __future__ import annotations

import fcntl
import logging
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from arcsearch.index.bundle import (
    BundleError,
    IndexManifest,
    Modality,
    copy_bundle_safely,
    read_embedder_manifest,
    read_index_manifest,
    sha256_of_path,
    write_json_atomic,
)
from arcsearch.index.chooser import IndexBudget
from arcsearch.index.durable import fsync_dir, fsync_tree, write_text_atomic

logger = logging.getLogger(__name__)

COLLECTION_FILE = "collection.json"
CURRENT_FILE = "CURRENT"
EMBEDDER_DIR = "embedder"
VERSIONS_DIR = "versions"
STAGING_DIR = "staging"
LOCK_FILE = ".lock"
KEEP_VERSIONS = 2
STALE_STAGING_S = 6 * 3600
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VERSION_PATTERN = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")
Backend = Literal["faiss", "milvus"]


class CollectionError(ValueError):
    """A collection is missing, malformed, or an operation on it does not fit (e.g. another embedder)."""


class CollectionNotFoundError(CollectionError):
    """No collection of that name exists."""


class CollectionInfo(BaseModel):
    """The contents of ``collection.json``."""

    name: str
    modality: Modality
    embedding_dim: int
    embedder: str = Field(EMBEDDER_DIR, description="embedder bundle folder, relative to the collection")
    embedder_sha256: str
    embedder_origin: str = Field("", description="where the embedder bundle was copied from")
    index_factory: str | None = Field(None, description="FAISS factory of its first index (None: the default)")
    index_budget: IndexBudget | None = Field(None, description="re-indexes choose the index by this budget "
                                                               "(index/chooser.py) unless a factory is given")
    backend: Backend = Field("faiss", description="where its vectors live: FAISS bundles in versions/, or a "
                                                  "Milvus collection (index/milvus_store.py)")
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


def collection_dir(collections_dir: Path, name: str) -> Path:
    """The folder of collection ``name``; raises CollectionError for names that are not plain slugs."""
    if not NAME_PATTERN.fullmatch(name):
        raise CollectionError(f"collection name {name!r} must match {NAME_PATTERN.pattern}")
    return Path(collections_dir) / name


def read_collection(collections_dir: Path, name: str) -> CollectionInfo:
    """Read ``<name>/collection.json``; raises CollectionNotFoundError if there is none."""
    path = collection_dir(collections_dir, name) / COLLECTION_FILE
    if not path.is_file():
        raise CollectionNotFoundError(f"collection {name!r} does not exist in {collections_dir}")
    try:
        return CollectionInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CollectionError(f"{path} is malformed: {exc}") from exc


def list_collections(collections_dir: Path) -> list[CollectionInfo]:
    """Every collection under ``collections_dir``, sorted by name (none if the folder does not exist)."""
    root = Path(collections_dir)
    if not root.is_dir():
        return []
    return [read_collection(root, p.name) for p in sorted(root.iterdir())
            if p.is_dir() and NAME_PATTERN.fullmatch(p.name) and (p / COLLECTION_FILE).is_file()]


def embedder_dir(collections_dir: Path, name: str) -> Path:
    """The collection's own copy of its embedder bundle."""
    return collection_dir(collections_dir, name) / read_collection(collections_dir, name).embedder


def create_collection(collections_dir: Path, name: str, embedder_dir: Path, *,
                      index_factory: str | None = None, index_budget: IndexBudget | None = None,
                      backend: Backend = "faiss") -> Path:
    """Create collection ``name`` (its vectors in ``backend``) with a copy of the embedder bundle; returns its
    folder.

    Idempotent for the same embedder (by weights hash); a different embedder raises CollectionError.
    """
    folder = collection_dir(collections_dir, name)
    manifest = read_embedder_manifest(Path(embedder_dir))
    if (folder / COLLECTION_FILE).is_file():
        info = read_collection(collections_dir, name)
        if info.embedder_sha256 != manifest.weights_sha256:
            raise CollectionError(f"collection {name!r} uses embedder {info.embedder_sha256[:12]}, not "
                                  f"{manifest.weights_sha256[:12]} from {embedder_dir}; use a new collection")
        if info.backend != backend:
            raise CollectionError(f"collection {name!r} is stored in {info.backend}, not {backend}")
        return folder
    actual = sha256_of_path(Path(embedder_dir) / manifest.weights_file)
    if actual != manifest.weights_sha256:
        raise BundleError(f"embedder {embedder_dir}: weights hash {actual[:12]} != manifest "
                          f"{manifest.weights_sha256[:12]}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / VERSIONS_DIR).mkdir(exist_ok=True)
    (folder / STAGING_DIR).mkdir(exist_ok=True)
    copy = folder / f".{EMBEDDER_DIR}.partial-{secrets.token_hex(4)}"
    copy_bundle_safely(embedder_dir, copy)  # regular files only: links and special files are refused
    fsync_tree(copy)
    shutil.rmtree(folder / EMBEDDER_DIR, ignore_errors=True)  # left by a crash before collection.json
    copy.rename(folder / EMBEDDER_DIR)
    info = CollectionInfo(name=name, modality=manifest.modality, embedding_dim=manifest.embedding_dim,
                          embedder_sha256=manifest.weights_sha256, embedder_origin=str(embedder_dir),
                          index_factory=index_factory, index_budget=index_budget, backend=backend)
    write_json_atomic(folder / COLLECTION_FILE, info.model_dump(mode="json"))
    fsync_dir(folder)
    fsync_dir(folder.parent)
    logger.info("created %s collection %r in %s", manifest.modality, name, folder)
    return folder


def new_version_id() -> str:
    """A fresh version id that sorts by creation time, e.g. ``20250101T120000123456Z-3fa2c1``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def staging_dir(collections_dir: Path, name: str) -> Path:
    """A fresh, not yet existing path under ``<name>/staging/`` to write one index bundle into."""
    read_collection(collections_dir, name)
    staging = collection_dir(collections_dir, name) / STAGING_DIR
    staging.mkdir(exist_ok=True)
    return staging / new_version_id()


@contextmanager
def collection_lock(collections_dir: Path, name: str) -> Iterator[None]:
    """An exclusive lock (flock) on one collection, across threads and processes."""
    path = collection_dir(collections_dir, name) / LOCK_FILE
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def current_version(collections_dir: Path, name: str) -> str | None:
    """The id of the live version, or None if the collection has never been published."""
    path = collection_dir(collections_dir, name) / CURRENT_FILE
    if not path.is_file():
        read_collection(collections_dir, name)  # raises if the collection itself is missing
        return None
    version = path.read_text(encoding="utf-8").strip()
    if not VERSION_PATTERN.fullmatch(version):
        raise CollectionError(f"{path} holds {version!r}, not a version id")
    return version


def current_index_dir(collections_dir: Path, name: str) -> Path:
    """The live index bundle of collection ``name``; raises CollectionError if none is published."""
    version = current_version(collections_dir, name)
    if version is None:
        raise CollectionError(f"collection {name!r} has no published index yet")
    return collection_dir(collections_dir, name) / VERSIONS_DIR / version


def list_versions(collections_dir: Path, name: str) -> list[str]:
    """Published version ids of ``name``, oldest first."""
    versions = collection_dir(collections_dir, name) / VERSIONS_DIR
    if not versions.is_dir():
        return []
    return sorted(p.name for p in versions.iterdir() if p.is_dir() and VERSION_PATTERN.fullmatch(p.name))


def _check_staged(info: CollectionInfo, staged: Path) -> IndexManifest:
    manifest = read_index_manifest(staged)  # raises BundleError if the bundle is incomplete
    if manifest.embedder_sha256 != info.embedder_sha256:
        raise CollectionError(f"index {staged} was built with embedder {manifest.embedder_sha256[:12]}, "
                              f"collection {info.name!r} uses {info.embedder_sha256[:12]}")
    if manifest.modality != info.modality or manifest.embedding_dim != info.embedding_dim:
        raise CollectionError(f"index {staged} is {manifest.modality}/{manifest.embedding_dim}-d, collection "
                              f"{info.name!r} is {info.modality}/{info.embedding_dim}-d")
    return manifest


def publish_version(collections_dir: Path, name: str, staged: Path, *, keep: int = KEEP_VERSIONS,
                    version: str | None = None) -> str:
    """Make the complete index bundle at ``staged`` the live version of ``name``; returns its id
    (``version`` if given: one from ``new_version_id`` that the caller prepared things for).

    Steps: check manifest and embedder hash, fsync, rename into ``versions/``, fsync, replace CURRENT,
    then remove old versions (keeping ``keep``, CURRENT always among them).
    """
    if version is not None and not VERSION_PATTERN.fullmatch(version):
        raise CollectionError(f"{version!r} is not a version id")
    info = read_collection(collections_dir, name)
    _check_staged(info, Path(staged))
    folder = collection_dir(collections_dir, name)
    with collection_lock(collections_dir, name):
        version = version or new_version_id()
        target = folder / VERSIONS_DIR / version
        target.parent.mkdir(exist_ok=True)
        fsync_tree(Path(staged))
        Path(staged).rename(target)
        fsync_dir(target.parent)
        write_text_atomic(folder / CURRENT_FILE, version + "\n")
        logger.info("collection %r now serves version %s", name, version)
        cleanup_versions(collections_dir, name, keep=keep, _locked=True)
    return version


def cleanup_versions(collections_dir: Path, name: str, *, keep: int = KEEP_VERSIONS,
                     _locked: bool = False) -> list[str]:
    """Remove all but the newest ``keep`` versions (never CURRENT) and stale staging folders."""
    if keep < 1:
        raise CollectionError(f"keep must be at least 1, got {keep}")
    if not _locked:
        with collection_lock(collections_dir, name):
            return cleanup_versions(collections_dir, name, keep=keep, _locked=True)
    folder = collection_dir(collections_dir, name)
    live = current_version(collections_dir, name)
    removed = [v for v in list_versions(collections_dir, name)[:-keep] if v != live]
    for version in removed:
        shutil.rmtree(folder / VERSIONS_DIR / version, ignore_errors=True)
    staging = folder / STAGING_DIR
    for stale in (staging.iterdir() if staging.is_dir() else []):
        if time.time() - stale.stat().st_mtime > STALE_STAGING_S:
            shutil.rmtree(stale, ignore_errors=True)
    if removed:
        logger.info("collection %r: removed old versions %s", name, ", ".join(removed))
    return removed


def index_collection(collections_dir: Path, name: str, embedder_dir: Path, source: Path, *,
                     factory: str | None = "Flat", budget: IndexBudget | None = None, batch_size: int = 64,
                     device: str = "auto", workers: int | None = None, shard_items: int | None = None) -> IndexManifest:
    """Create (or reuse) collection ``name``, index ``source`` with its embedder (``factory``, or when it is
    None one chosen by ``budget``), publish a new version.

    The corpus is embedded in resumable shards under ``<name>/shards/`` (index.sharded): run again after a
    kill, the same corpus resumes from its last finished shard. ``workers`` None: one per CUDA device, else one.
    """
    from arcsearch.index.sharded import DEFAULT_SHARD_ITEMS, SHARDS_DIR, build_sharded_bundle, remove_work

    folder = create_collection(collections_dir, name, embedder_dir)
    staged = staging_dir(collections_dir, name)
    try:
        manifest, work_dir = build_sharded_bundle(
            folder / EMBEDDER_DIR, Path(source), staged, work_root=folder / SHARDS_DIR, factory=factory,
            budget=budget, batch_size=batch_size, device=device, workers=workers,
            shard_items=shard_items or DEFAULT_SHARD_ITEMS)
        publish_version(collections_dir, name, staged)
        remove_work(work_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # only left if publishing failed
    return manifest
