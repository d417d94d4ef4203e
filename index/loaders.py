"""Code-free loading of embedder weights: nothing in a bundle can make the loader run code or unpickle.

Image: ``model.safetensors`` (a state dict) loaded with ``safetensors.torch.load_file`` into an architecture
of ours (index/architectures.py) named by the manifest, ``load_state_dict(strict=True)``.
Text: a sentence-transformers folder whose weights are safetensors only, whose modules are stock
``sentence_transformers.*`` classes, with no files that pickle or hold code, loaded with
``trust_remote_code=False`` (sentence-transformers >= 6 refuses custom modules without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from arcsearch.index.architectures import build_image_architecture
from arcsearch.index.bundle import EMBEDDER_FORMAT_VERSION, BundleError, EmbedderManifest, ImageArchitecture
from arcsearch.index.bundle_files import bundle_files, read_small_json

IMAGE_WEIGHTS_FILE = "model.safetensors"
TEXT_WEIGHTS_DIR = "model"
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill"})
CODE_SUFFIXES = frozenset({".py", ".pyc", ".so"})
STOCK_MODULE_PREFIX = "sentence_transformers."
REEXPORT_HINT = ("re-export the encoder with this arcsearch: `arcsearch train` (or training.export) writes "
                 f"format {EMBEDDER_FORMAT_VERSION}, model.safetensors plus an 'architecture' in manifest.json")


def check_image_manifest(folder: Path, manifest: EmbedderManifest) -> ImageArchitecture:
    """The architecture of an image manifest that describes safetensors weights for one of ours; else BundleError."""
    if manifest.format_version < 2 or manifest.weights_file.endswith(".pt2"):
        raise BundleError(
            f"embedder bundle {folder} is an image bundle of format {manifest.format_version} "
            f"({manifest.weights_file}, a torch.export archive, which unpickles parts of itself when loaded); "
            f"arcsearch no longer loads it: {REEXPORT_HINT}")
    if not manifest.weights_file.endswith(".safetensors"):
        raise BundleError(f"embedder bundle {folder}: image weights {manifest.weights_file!r} are not a "
                          f".safetensors file; only safetensors weights are loaded")
    if manifest.architecture is None:
        raise BundleError(f"embedder bundle {folder}: the manifest has no 'architecture' for its image weights; "
                          f"{REEXPORT_HINT}")
    if manifest.architecture.embedding_dim != manifest.embedding_dim:
        raise BundleError(f"embedder bundle {folder}: architecture embedding_dim "
                          f"{manifest.architecture.embedding_dim} != manifest embedding_dim {manifest.embedding_dim}")
    return manifest.architecture


def _misfit(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    """What keeps ``state`` from loading strictly into a module whose state dict is ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = [f"missing tensors {missing[:5]}"] if missing else []
    problems += [f"unexpected tensors {unexpected[:5]}"] if unexpected else []
    problems += [f"{k} has shape {tuple(state[k].shape)}, the architecture {tuple(expected[k].shape)}"
                 for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape][:5]
    return problems


def load_image_module(folder: Path, manifest: EmbedderManifest, device: torch.device) -> torch.nn.Module:
    """The manifest's architecture with the bundle's safetensors weights, in eval mode on ``device``.

    (N, 3, H, W) float32 -> (N, embedding_dim) float32, not normalised.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    architecture = check_image_manifest(folder, manifest)
    path = Path(folder) / manifest.weights_file
    bundle_files(path.parent)  # refuses links and special files (load_file would follow them)
    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"{path} is not a safetensors file: {exc}") from None
    module = build_image_architecture(architecture)
    problems = _misfit(state, module.state_dict())
    if problems:
        raise BundleError(f"weights {path} do not fit architecture {architecture.name} "
                          f"({architecture.embedding_dim}-d): {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)
    return module.to(device).eval()


def _refused_files(files: list[tuple[str, int]]) -> list[str]:
    return [rel for rel, _size in files if Path(rel).suffix.lower() in PICKLE_SUFFIXES | CODE_SUFFIXES]


def _check_modules(folder: Path) -> None:
    """modules.json must list stock sentence-transformers modules only (a custom one would run its code)."""
    try:
        modules: Any = read_small_json(folder / "modules.json")
    except FileNotFoundError:
        raise BundleError(f"text model {folder} has no modules.json (not a sentence-transformers folder)") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) and isinstance(m.get("type"), str)
                                                for m in modules):
        raise BundleError(f"{folder / 'modules.json'} must be a list of modules, each with a 'type'")
    custom = [m["type"] for m in modules if not m["type"].startswith(STOCK_MODULE_PREFIX)]
    if custom:
        raise BundleError(f"text model {folder}: module {custom[0]} in modules.json is not a "
                          f"sentence_transformers class; custom modules would run their own code and are refused")


def check_text_folder(folder: Path) -> None:
    """Raise BundleError unless ``folder`` is a sentence-transformers folder that loads without running code."""
    files = bundle_files(folder)  # refuses links and special files
    _check_modules(folder)
    refused = _refused_files(files)
    if refused:
        raise BundleError(f"text model {folder} holds {', '.join(refused[:5])}: files that unpickle or hold code "
                          "are refused; save the model with safetensors weights only "
                          "(SentenceTransformer.save(path, safe_serialization=True))")
    if not any(rel.endswith(".safetensors") for rel, _size in files):
        raise BundleError(f"text model {folder} has no safetensors weights")
    for rel, _size in files:
        config = read_small_json(folder / rel) if Path(rel).name == "config.json" else None
        if isinstance(config, dict) and "auto_map" in config:
            raise BundleError(f"text model {folder}: {rel} has an 'auto_map' (remote modelling code); refused")


def load_text_model(folder: Path, device: torch.device) -> torch.nn.Module:
    """A ``SentenceTransformer`` from a checked folder, local files only, no remote code, safetensors only."""
    from sentence_transformers import SentenceTransformer

    check_text_folder(folder)
    model = SentenceTransformer(str(folder), device=str(device), local_files_only=True, trust_remote_code=False,
                                model_kwargs={"use_safetensors": True})
    return model.eval()
