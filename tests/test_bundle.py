"""Bundle manifests round-trip, hashes follow content, and wrong folders are refused clearly."""

from __future__ import annotations

import json

import pytest

from arcsearch.index.bundle import (
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


@pytest.mark.parametrize("weights_file", ["../elsewhere", "/etc/passwd", "", "..", "a/b"])
def test_weights_outside_the_bundle_folder_are_refused(tmp_path, weights_file):
    manifest = EmbedderManifest(modality="text", embedding_dim=8, weights_file="model", weights_sha256="ab")
    write_manifest(tmp_path, manifest)
    data = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "weights_file": weights_file}))
    with pytest.raises(BundleError, match="inside the bundle folder"):
        read_embedder_manifest(tmp_path)


def test_a_manifest_that_is_a_link_or_huge_is_refused(tmp_path):
    (tmp_path / "manifest.json").symlink_to("/dev/zero")
    with pytest.raises(BundleError, match="manifest.json is a symbolic link"):
        read_embedder_manifest(tmp_path)
    (tmp_path / "manifest.json").unlink()
    (tmp_path / "manifest.json").write_text(" " * (2 << 20) + "{}")
    with pytest.raises(BundleError, match="larger than"):
        read_embedder_manifest(tmp_path)


def test_format_versions(tmp_path):
    """Format 1 manifests are still read (loading decides what it refuses); newer ones are refused by name."""
    manifest = EmbedderManifest(modality="text", embedding_dim=8, weights_file="model", weights_sha256="ab")
    assert manifest.format_version == 2
    for version, ok in ((1, True), (2, True), (3, False)):
        write_manifest(tmp_path, manifest.model_copy(update={"format_version": version}))
        if ok:
            assert read_embedder_manifest(tmp_path).format_version == version
        else:
            with pytest.raises(BundleError, match="format 3, newer than this arcsearch reads"):
                read_embedder_manifest(tmp_path)
    write_manifest(tmp_path / "i", IndexManifest(modality="text", embedding_dim=8, num_items=0, embedder_sha256="ab"))
    assert read_index_manifest(tmp_path / "i").format_version == 1
