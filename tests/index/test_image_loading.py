"""Image embedder bundles load without running code: safetensors weights into an architecture of ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from arcsearch.index.architectures import build_image_architecture
from arcsearch.index.bundle import BundleError, ImageArchitecture, ImagePreprocessing, read_embedder_manifest
from arcsearch.index.embedder import IMAGE_WEIGHTS_FILE, load_embedder
from arcsearch.index.preprocess import decode_image, images_to_batch
from arcsearch.training.backbones import build_image_encoder
from arcsearch.training.export import export_image_embedder
from tests.index.crafted import copy_bundle, legacy_image_bundle, pickle_payload

PARAMS = ImagePreprocessing(height=32, width=32)
PARAMS_128 = ImagePreprocessing()  # the session bundle's


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small-CNN image embedder (8-d), exported by training.export."""
    torch.manual_seed(0)
    encoder = build_image_encoder("small_cnn", embedding_dim=8).eval()
    return export_image_embedder(encoder, tmp_path_factory.mktemp("small") / "bundle", embedding_dim=8,
                                 preprocessing=PARAMS, backbone="small_cnn")


def rewrite_manifest(folder: Path, **changes: object) -> None:
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}), encoding="utf-8")


def test_the_payload_is_live(tmp_path: Path) -> None:
    """The crafted files really run code when unpickled, so the refusals below mean something."""
    marker = tmp_path / "ran"
    torch.load(pickle_payload(tmp_path / "p.pt", marker), weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    with pytest.raises(Exception):  # noqa: B017 - torch.export.load fails, but only after the payload ran
        torch.export.load(str(legacy_image_bundle(tmp_path / "legacy", marker) / "model.pt2"))
    assert marker.exists()


def test_a_legacy_pt2_bundle_is_refused_without_being_opened(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bundle = legacy_image_bundle(tmp_path / "legacy", marker)
    with pytest.raises(BundleError, match="re-export") as caught:
        load_embedder(bundle, device="cpu")
    assert "format 1" in str(caught.value) and "model.pt2" in str(caught.value)
    assert not marker.exists()


def test_a_pickle_named_safetensors_is_refused(small_bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bundle = copy_bundle(small_bundle, tmp_path / "b")
    pickle_payload(bundle / IMAGE_WEIGHTS_FILE, marker)
    with pytest.raises(BundleError, match="not a safetensors file"):
        load_embedder(bundle, device="cpu")
    assert not marker.exists()


def test_weights_in_any_other_format_are_refused(small_bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bundle = copy_bundle(small_bundle, tmp_path / "b")
    pickle_payload(bundle / "model.pt", marker)
    rewrite_manifest(bundle, weights_file="model.pt")
    with pytest.raises(BundleError, match=r"model\.pt.*safetensors"):
        load_embedder(bundle, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize(("architecture", "message"), [
    ({"name": "resnet_with_hooks", "embedding_dim": 8}, "architecture"),
    ({"name": "small_cnn", "embedding_dim": 8, "module": "os.system"}, "architecture"),
    ({"name": "small_cnn", "embedding_dim": 10 ** 9}, "architecture"),
    (None, "no 'architecture'"),
])
def test_unknown_or_missing_architectures_are_refused(small_bundle: Path, tmp_path: Path, architecture: object,
                                                      message: str) -> None:
    bundle = copy_bundle(small_bundle, tmp_path / "b")
    rewrite_manifest(bundle, architecture=architecture)
    with pytest.raises(BundleError, match=message):
        load_embedder(bundle, device="cpu")


@pytest.mark.parametrize(("change", "message"), [
    ("missing", r"missing.*projection\.bias"),
    ("extra", r"unexpected.*hook\.weight"),
    ("shape", r"projection\.weight.*shape"),
])
def test_weights_that_do_not_fit_the_architecture_are_refused(small_bundle: Path, tmp_path: Path, change: str,
                                                              message: str) -> None:
    bundle = copy_bundle(small_bundle, tmp_path / "b")
    state = load_file(bundle / IMAGE_WEIGHTS_FILE)
    if change == "missing":
        del state["projection.bias"]
    elif change == "extra":
        state["hook.weight"] = torch.zeros(2)
    else:
        state["projection.weight"] = torch.zeros(9, 256)
    save_file(state, bundle / IMAGE_WEIGHTS_FILE)
    with pytest.raises(BundleError, match=message):
        load_embedder(bundle, device="cpu")


def test_architecture_and_manifest_dimension_must_agree(small_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(small_bundle, tmp_path / "b")
    rewrite_manifest(bundle, embedding_dim=16)
    with pytest.raises(BundleError, match="embedding_dim 16"):
        load_embedder(bundle, device="cpu")


def test_a_newer_format_is_refused_clearly(small_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(small_bundle, tmp_path / "b")
    rewrite_manifest(bundle, format_version=99)
    with pytest.raises(BundleError, match="format 99.*newer"):
        read_embedder_manifest(bundle)


def test_export_refuses_an_encoder_that_is_not_the_named_architecture(tmp_path: Path) -> None:
    encoder = build_image_encoder("small_cnn", embedding_dim=8)
    with pytest.raises(ValueError, match="mobilenet_v2"):
        export_image_embedder(encoder, tmp_path / "b", embedding_dim=8, preprocessing=PARAMS,
                              backbone="mobilenet_v2")
    assert not (tmp_path / "b").exists()


def test_exported_mobilenet_bundle_round_trips(image_embedder_dir: Path, small_faces: Path) -> None:
    """The session's MobileNetV2 bundle gives the vectors of the encoder it was exported from."""
    from tests.bundles import prepared

    torch.manual_seed(0)  # as tests/bundles.py built it
    encoder = build_image_encoder("mobilenet_v2", embedding_dim=128, checkpoint=prepared().mobilenet_weights).eval()
    manifest = read_embedder_manifest(image_embedder_dir)
    assert manifest.architecture == ImageArchitecture(name="mobilenet_v2", embedding_dim=128)
    assert manifest.weights_file == IMAGE_WEIGHTS_FILE == "model.safetensors"
    assert sorted(p.name for p in image_embedder_dir.iterdir()) == ["manifest.json", "model.safetensors"]
    images = [decode_image(path) for path in sorted(small_faces.glob("s*/*.pgm"))]
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(encoder(torch.from_numpy(images_to_batch(images, PARAMS_128))))
    loaded = torch.from_numpy(load_embedder(image_embedder_dir, device="cpu").embed_images(images, batch_size=4))
    assert loaded.shape == (9, 128)
    assert torch.allclose(loaded, expected, atol=1e-5)


def test_architectures_build_the_training_encoders() -> None:
    for name in ("mobilenet_v2", "small_cnn"):
        built = build_image_architecture(ImageArchitecture(name=name, embedding_dim=8)).state_dict()
        trained = build_image_encoder(name, embedding_dim=8).state_dict()
        assert {k: v.shape for k, v in built.items()} == {k: v.shape for k, v in trained.items()}
