"""Bundle manifests: the on-disk contracts between training, index and service.

An *embedder bundle* is a folder with ``manifest.json`` plus the weights: ``model.safetensors`` (image: a
state dict for the ``architecture`` the manifest names, see index/architectures.py) or ``model/`` (text: a
sentence-transformers folder with safetensors weights). Format 1 image bundles held a ``torch.export``
archive (``model.pt2``), which unpickles parts of itself when loaded; they are read but never loaded.
An *index bundle* is a folder with ``manifest.json``, ``index.faiss`` and ``items.sqlite``.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from arcsearch.index.bundle_files import BundleError as BundleError  # re-exported: the bundle API lives here
from arcsearch.index.bundle_files import copy_bundle_safely as copy_bundle_safely
from arcsearch.index.bundle_files import read_small_json
from arcsearch.index.bundle_files import sha256_of_path as sha256_of_path

MANIFEST_NAME = "manifest.json"
EMBEDDER_FORMAT = "arcsearch.embedder"
INDEX_FORMAT = "arcsearch.index"
EMBEDDER_FORMAT_VERSION = 2  # 2: image weights are safetensors + an architecture name (1: a torch.export .pt2)
INDEX_FORMAT_VERSION = 1
MAX_EMBEDDING_DIM = 8192  # a manifest cannot make the loader allocate a huge projection

Modality = Literal["image", "text"]
ArchitectureName = Literal["mobilenet_v2", "small_cnn"]


class ImagePreprocessing(BaseModel):
    """How raw images become the encoder's input tensor (N, 3, height, width)."""

    height: int = 112
    width: int = 112
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


LongTexts = Literal["truncate", "chunk"]
MAX_CHUNKS_LIMIT = 1024  # a manifest cannot make one text cost more forward passes than this


class TextPreprocessing(BaseModel):
    """The text policy, the same at indexing and at query time: each forward pass sees at most
    ``max_seq_length`` tokens (special tokens included). A longer text is cut to its first window
    (``truncate``; bundles written before ``long_texts`` existed do this) or split into overlapping windows
    ``chunk_stride_tokens`` apart, at most ``max_chunks`` of them, whose embeddings are averaged
    (``chunk``; index/long_texts.py)."""

    max_seq_length: int = Field(128, ge=4, description="tokens per forward pass, special tokens included")
    long_texts: LongTexts = Field("truncate", description="a text longer than the window: truncate (first window "
                                                          "only) or chunk (all windows, averaged)")
    chunk_stride_tokens: int | None = Field(None, ge=1, description="chunk: tokens between the starts of "
                                            "consecutive windows; None: 3/4 of a window's text tokens")
    max_chunks: int = Field(16, ge=1, le=MAX_CHUNKS_LIMIT, description="chunk: most windows embedded per text; "
                            "tokens past the last of them are left out, as truncate leaves out tokens past the first")


class ImageArchitecture(BaseModel):
    """What an image embedder's weights fit: a backbone defined in index/architectures.py and the projection's
    output size. Loading instantiates exactly this; nothing in a bundle names code to run."""

    model_config = ConfigDict(extra="forbid")

    name: ArchitectureName = Field(description="backbone: mobilenet_v2 or small_cnn")
    embedding_dim: int = Field(ge=1, le=MAX_EMBEDDING_DIM, description="output size of the linear projection")


class EmbedderManifest(BaseModel):
    """Describes an exported, headless embedder; enough to load and use it without training code."""

    format: Literal["arcsearch.embedder"] = EMBEDDER_FORMAT
    format_version: int = Field(EMBEDDER_FORMAT_VERSION, ge=1, le=EMBEDDER_FORMAT_VERSION)
    modality: Modality
    embedding_dim: int
    normalized: bool = True
    weights_file: str = Field(description="model.safetensors (image state dict) or model (sentence-transformers "
                                          "folder); a name inside the bundle folder")
    weights_sha256: str
    architecture: ImageArchitecture | None = Field(None, description="image only: what the weights fit")
    image: ImagePreprocessing | None = None
    text: TextPreprocessing | None = None
    backbone: str = ""
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @field_validator("weights_file")
    @classmethod
    def _inside_the_bundle(cls, name: str) -> str:
        if Path(name).name != name or name in {"", ".", ".."}:
            raise ValueError(f"weights_file {name!r} must name a file or folder inside the bundle folder")
        return name


class IndexTuning(BaseModel):
    """How an index chosen by budget was tuned (index/chooser.py) and what it measured on held-out queries."""

    target_recall: float = Field(description="recall@10 against exact search that the chooser aimed at")
    max_memory_bytes: int | None = Field(None, description="the budget for the index's size; None: no bound")
    recall_at_10: float = Field(description="measured with the search parameters, the queries' own vectors left out")
    query_ms_p50: float = Field(description="median time of one single-query search, milliseconds")
    queries: int = Field(description="held-out corpus vectors used as queries (index.tuning.held_out_ids)")
    seed: int = Field(description="seed that drew the queries and the training sample")
    build_s: float = Field(description="seconds to train and fill the index, tuning not included")
    estimated_bytes: int = Field(description="estimated size of the index (index/faiss_memory.py)")


class IndexManifest(BaseModel):
    """Describes a FAISS index bundle and the embedder it was built with."""

    format: Literal["arcsearch.index"] = INDEX_FORMAT
    format_version: int = INDEX_FORMAT_VERSION
    modality: Modality
    embedding_dim: int
    metric: Literal["inner_product"] = "inner_product"
    factory: str = "Flat"
    search_params: str = Field("", description="FAISS search parameters applied on load, e.g. 'nprobe=16'")
    tuning: IndexTuning | None = Field(None, description="set when the index was chosen by budget")
    num_items: int
    embedder_sha256: str
    source: str = ""
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


ManifestT = TypeVar("ManifestT", EmbedderManifest, IndexManifest)


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


def _read_json(folder: Path) -> Any:
    try:
        return read_small_json(Path(folder) / MANIFEST_NAME)
    except FileNotFoundError:
        raise BundleError(f"{folder} is not a bundle: {MANIFEST_NAME} is missing") from None


def _validated(model: type[ManifestT], data: dict[str, Any], folder: Path) -> ManifestT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"{Path(folder) / MANIFEST_NAME} is not a valid {data.get('format')} manifest: {exc}"
                          ) from None


def read_embedder_manifest(folder: Path) -> EmbedderManifest:
    """Read and validate an embedder bundle's manifest (any format this version reads; loading may still
    refuse an old one, see ``index.embedder.load_embedder``)."""
    data = _read_json(folder)
    if not isinstance(data, dict) or data.get("format") != EMBEDDER_FORMAT:
        raise BundleError(f"{folder} is not an embedder bundle (format={_get(data, 'format')!r})")
    version = data.get("format_version", 1)
    if isinstance(version, int) and version > EMBEDDER_FORMAT_VERSION:
        raise BundleError(f"embedder bundle {folder} has format {version}, newer than this arcsearch reads "
                          f"({EMBEDDER_FORMAT_VERSION}); upgrade arcsearch")
    return _validated(EmbedderManifest, data, folder)


def read_index_manifest(folder: Path) -> IndexManifest:
    """Read and validate an index bundle's manifest."""
    data = _read_json(folder)
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise BundleError(f"{folder} is not an index bundle (format={_get(data, 'format')!r})")
    return _validated(IndexManifest, data, folder)


def _get(data: object, key: str) -> object:
    return data.get(key) if isinstance(data, dict) else None
