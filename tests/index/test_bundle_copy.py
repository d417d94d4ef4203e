"""Embedder bundles are copied (and hashed, and loaded) as regular files only: no links, no special files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arcsearch.index.bundle import BundleError, copy_bundle_safely, read_embedder_manifest, sha256_of_path
from arcsearch.index.collection_admin import new_collection
from arcsearch.index.collections import create_collection
from arcsearch.index.embedder import load_embedder
from tests.bundles import fake_embedder_bundle
from tests.index.crafted import copy_bundle


def plant(bundle: Path, kind: str, *, name: str = "leak") -> str:
    """Put a hostile entry of ``kind`` at ``name`` in ``bundle`` (outside the hashed weights by default);
    returns its name relative to the bundle."""
    target = {"environ_link": "/proc/self/environ", "zero_link": "/dev/zero", "dir_link": "/etc"}.get(kind)
    name = name if kind != "manifest_link" else "manifest.json"
    entry = bundle / name
    if kind == "fifo":
        os.mkfifo(entry)
    elif kind == "manifest_link":
        real = bundle / "real-manifest.json"
        entry.rename(real)
        entry.symlink_to(real)
    else:
        entry.symlink_to(target)
    return name


@pytest.mark.parametrize("kind", ["environ_link", "zero_link", "dir_link", "fifo", "manifest_link"])
def test_collection_creation_refuses_links_and_special_files(tmp_path: Path, kind: str) -> None:
    bundle = fake_embedder_bundle(tmp_path / "embedder")
    name = plant(bundle, kind)
    collections = tmp_path / "collections"
    with pytest.raises(BundleError, match=name.replace(".", r"\.")):
        new_collection(collections, "docs", bundle, factory="Flat")
    copied = [p for p in collections.rglob("*") if p.is_file() and "leak" in p.name] if collections.exists() else []
    assert copied == []
    assert not (collections / "docs" / "collection.json").exists()


def test_the_environment_never_lands_in_the_volume(tmp_path: Path) -> None:
    environ = Path("/proc/self/environ").read_bytes()
    bundle = fake_embedder_bundle(tmp_path / "embedder")
    plant(bundle, "environ_link")
    with pytest.raises(BundleError, match="leak"):
        create_collection(tmp_path / "collections", "docs", bundle)
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and p.read_bytes() == environ]
    assert leaked == []


def test_copy_reproduces_regular_files_and_their_hash(tmp_path: Path) -> None:
    bundle = fake_embedder_bundle(tmp_path / "embedder")
    (bundle / "model" / "sub").mkdir()
    (bundle / "model" / "sub" / "vocab.txt").write_text("a\nb\n")
    copy_bundle_safely(bundle, tmp_path / "copy")
    assert sha256_of_path(tmp_path / "copy") == sha256_of_path(bundle)
    assert read_embedder_manifest(tmp_path / "copy") == read_embedder_manifest(bundle)


def test_copy_refuses_a_bundle_over_the_size_bound(tmp_path: Path) -> None:
    bundle = fake_embedder_bundle(tmp_path / "embedder")
    (bundle / "model" / "big.safetensors").write_bytes(b"\0" * 5000)
    with pytest.raises(BundleError, match=r"more than 4096 bytes"):
        copy_bundle_safely(bundle, tmp_path / "copy", max_bytes=4096)
    assert not (tmp_path / "copy").exists()


def test_copy_refuses_an_existing_target(tmp_path: Path) -> None:
    bundle = fake_embedder_bundle(tmp_path / "embedder")
    (tmp_path / "copy").mkdir()
    with pytest.raises(FileExistsError):
        copy_bundle_safely(bundle, tmp_path / "copy")


def test_hashing_refuses_links(tmp_path: Path) -> None:
    bundle = fake_embedder_bundle(tmp_path / "embedder")
    plant(bundle, "zero_link", name="model/leak")
    with pytest.raises(BundleError, match="model/leak"):
        sha256_of_path(bundle / "model")


def test_loading_refuses_links_in_the_bundle(text_embedder_dir: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(text_embedder_dir, tmp_path / "text")
    (bundle / "model" / "tokenizer.json").unlink()
    (bundle / "model" / "tokenizer.json").symlink_to(text_embedder_dir / "model" / "tokenizer.json")
    with pytest.raises(BundleError, match=r"tokenizer\.json is a symbolic link"):
        load_embedder(bundle, device="cpu")
