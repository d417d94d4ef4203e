"""Text embedder bundles (sentence-transformers folders) load only safetensors weights and stock modules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from arcsearch.index.bundle import BundleError
from arcsearch.index.embedder import TEXT_WEIGHTS_DIR, load_embedder
from tests.index.crafted import copy_bundle, pickle_payload


@pytest.fixture()
def text_copy(text_embedder_dir: Path, tmp_path: Path) -> Path:
    return copy_bundle(text_embedder_dir, tmp_path / "text")


def test_export_writes_only_safetensors_weights(text_embedder_dir: Path) -> None:
    files = [p.relative_to(text_embedder_dir).as_posix() for p in text_embedder_dir.rglob("*") if p.is_file()]
    assert "model/model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], files


@pytest.mark.parametrize("name", ["pytorch_model.bin", "1_Pooling/pytorch_model.bin", "optimizer.pt",
                                  "training_args.pkl", "extra.ckpt", "weights.pth"])
def test_a_pickle_capable_file_anywhere_is_refused(text_copy: Path, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "ran"
    pickle_payload(text_copy / TEXT_WEIGHTS_DIR / name, marker)
    with pytest.raises(BundleError, match=name.rsplit("/", 1)[-1].replace(".", r"\.")):
        load_embedder(text_copy, device="cpu")
    assert not marker.exists()


def test_pickle_weights_instead_of_safetensors_are_refused(text_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (text_copy / TEXT_WEIGHTS_DIR / "model.safetensors").unlink()
    pickle_payload(text_copy / TEXT_WEIGHTS_DIR / "pytorch_model.bin", marker)
    with pytest.raises(BundleError, match="pytorch_model.bin"):
        load_embedder(text_copy, device="cpu")
    assert not marker.exists()


def test_a_folder_without_safetensors_weights_is_refused(text_copy: Path) -> None:
    (text_copy / TEXT_WEIGHTS_DIR / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="no safetensors weights"):
        load_embedder(text_copy, device="cpu")


def _add_module(folder: Path, class_ref: str) -> None:
    modules_path = folder / TEXT_WEIGHTS_DIR / "modules.json"
    modules = json.loads(modules_path.read_text())
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "", "type": class_ref})
    modules_path.write_text(json.dumps(modules))


def test_a_custom_module_is_refused_and_its_code_never_runs(text_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (text_copy / TEXT_WEIGHTS_DIR / "custom_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nclass Evil:\n    pass\n")
    _add_module(text_copy, "custom_module.Evil")
    with pytest.raises(BundleError, match=r"custom_module\.Evil.*not a sentence_transformers"):
        load_embedder(text_copy, device="cpu")
    assert not marker.exists()


def test_code_files_in_the_folder_are_refused(text_copy: Path) -> None:
    (text_copy / TEXT_WEIGHTS_DIR / "modeling_evil.py").write_text("raise SystemExit('ran')\n")
    with pytest.raises(BundleError, match=r"modeling_evil\.py"):
        load_embedder(text_copy, device="cpu")


def test_remote_code_in_the_transformers_config_is_refused(text_copy: Path) -> None:
    config_path = text_copy / TEXT_WEIGHTS_DIR / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    config_path.write_text(json.dumps(config))
    with pytest.raises(BundleError, match="auto_map"):
        load_embedder(text_copy, device="cpu")


@pytest.mark.parametrize("modules", ["{not json", '{"type": "x"}', '[{"path": "x"}]'])
def test_a_malformed_modules_json_is_refused(text_copy: Path, modules: str) -> None:
    (text_copy / TEXT_WEIGHTS_DIR / "modules.json").write_text(modules)
    with pytest.raises(BundleError, match="modules.json"):
        load_embedder(text_copy, device="cpu")


def test_the_exported_text_bundle_still_embeds(text_embedder_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from tests.bundles import prepared

    texts = ["a dog runs in the park", "the stock market fell", "a puppy plays outside"]
    loaded = load_embedder(text_embedder_dir, device="cpu").embed_texts(texts)
    original = SentenceTransformer(str(prepared().minilm_dir), device="cpu", local_files_only=True)
    expected = original.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(loaded, expected, atol=1e-5)
