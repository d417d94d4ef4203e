"""Bundle manifests: the on-disk contracts between training, index and service.

An *embedder bundle* is a folder with ``manifest.json`` plus the weights:
``model.pt`` (TorchScript, image) or ``model/`` (a sentence-transformers folder, text).
An *index bundle* is a folder with ``manifest.json``, ``index.faiss`` and ``items.sqlite``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

MANIFEST_NAME = "manifest.json"
EMBEDDER_FORMAT = "arcsearch.embedder"
INDEX_FORMAT = "arcsearch.index"
FORMAT_VERSION = 1

Modality = Literal["image", "text"]


class BundleError(ValueError):
    """A bundle folder is missing, malformed, or does not fit where it is used."""


class ImagePreprocessing(BaseModel):
    """How raw images become the encoder's input tensor (N, 3, height, width)."""

    height: int = 112
    width: int = 112
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class TextPreprocessing(BaseModel):
    """Token limit of the text encoder; longer texts are truncated by its tokenizer."""

    max_seq_length: int = 128


class EmbedderManifest(BaseModel):
    """Describes an exported, headless embedder; enough to load and use it without training code."""

    format: Literal["arcsearch.embedder"] = EMBEDDER_FORMAT
    format_version: int = FORMAT_VERSION
    modality: Modality
    embedding_dim: int
    normalized: bool = True
    weights_file: str = Field(description="model.pt (TorchScript) or model (sentence-transformers folder)")
    weights_sha256: str
    image: ImagePreprocessing | None = None
    text: TextPreprocessing | None = None
    backbone: str = ""
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


class IndexManifest(BaseModel):
    """Describes a FAISS index bundle and the embedder it was built with."""

    format: Literal["arcsearch.index"] = INDEX_FORMAT
    format_version: int = FORMAT_VERSION
    modality: Modality
    embedding_dim: int
    metric: Literal["inner_product"] = "inner_product"
    factory: str = "Flat"
    num_items: int
    embedder_sha256: str
    source: str = ""
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle depends on, recorded for reproducibility."""
    import faiss
    import numpy
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "numpy": numpy.__version__, "faiss": faiss.__version__}
    try:
        import sentence_transformers

        versions["sentence_transformers"] = sentence_transformers.__version__
    except ImportError:  # pragma: no cover - a hard dependency, kept optional here for clarity
        pass
    return versions


def sha256_of_path(path: Path) -> str:
    """Content hash of a file, or of every file below a folder (relative names included, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise BundleError(f"nothing to hash at {path}")
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON to ``path`` via a temporary file, fsync and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_manifest(folder: Path, manifest: EmbedderManifest | IndexManifest) -> Path:
    """Write ``manifest.json`` into ``folder`` (created if needed); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST_NAME
    write_json_atomic(path, manifest.model_dump(mode="json"))
    return path


def _read_json(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{folder} is not a bundle: {MANIFEST_NAME} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc


def read_embedder_manifest(folder: Path) -> EmbedderManifest:
    """Read and validate an embedder bundle's manifest."""
    data = _read_json(folder)
    if data.get("format") != EMBEDDER_FORMAT:
        raise BundleError(f"{folder} is not an embedder bundle (format={data.get('format')!r})")
    return EmbedderManifest.model_validate(data)


def read_index_manifest(folder: Path) -> IndexManifest:
    """Read and validate an index bundle's manifest."""
    data = _read_json(folder)
    if data.get("format") != INDEX_FORMAT:
        raise BundleError(f"{folder} is not an index bundle (format={data.get('format')!r})")
    return IndexManifest.model_validate(data)
