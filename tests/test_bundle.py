"""Bundle manifests round-trip, hashes follow content, and wrong folders are refused clearly."""

from __future__ import annotations

import json

import pytest

from index.bundle import (
    BundleError,
    EmbedderManifest,
    IndexManifest,
    read_embedder_manifest,
    read_index_manifest,
    sha256_of_path,
    write_manifest,
)


def test_manifest_round_trip_and_format_check(tmp_path):
    manifest = EmbedderManifest(modality="text", embedding_dim=384, weights_file="model", weights_sha256="ab")
    write_manifest(tmp_path / "e", manifest)
    assert read_embedder_manifest(tmp_path / "e") == manifest
    with pytest.raises(BundleError, match="not an index bundle"):
        read_index_manifest(tmp_path / "e")
    write_manifest(tmp_path / "i", IndexManifest(modality="text", embedding_dim=384, num_items=3,
                                                 embedder_sha256="ab"))
    assert read_index_manifest(tmp_path / "i").num_items == 3


def test_missing_or_broken_manifest_names_the_problem(tmp_path):
    with pytest.raises(BundleError, match="manifest.json is missing"):
        read_embedder_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_embedder_manifest(tmp_path)


def test_hash_changes_with_content_and_names(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"1234")
    first = sha256_of_path(folder)
    (folder / "a.bin").write_bytes(b"1235")
    second = sha256_of_path(folder)
    (folder / "a.bin").rename(folder / "b.bin")
    assert len({first, second, sha256_of_path(folder)}) == 3
    assert json.loads(json.dumps(first)) == first
