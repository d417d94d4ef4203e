"""Test bundles shared by tests/index and tests/service, built once per test session.

Data: ``arcsearch.prepare.defaults.prepare_all`` into ``$ARCSEARCH_TEST_DATA`` (default ``<repo>/.cache/test-data``,
cached between runs). Embedders: MobileNetV2 (ImageNet weights, random 128-d projection, untrained)
and all-MiniLM-L6-v2, exported with ``training.export``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from arcsearch.index.bundle import EmbedderManifest, sha256_of_path, write_manifest

REPO = Path(__file__).resolve().parents[1]
_built: dict[str, Path] = {}


def data_dir() -> Path:
    return Path(os.environ.get("ARCSEARCH_TEST_DATA", REPO / ".cache" / "test-data"))


@cache
def prepared() -> Any:
    from arcsearch.prepare.defaults import prepare_all

    return prepare_all(data_dir())


def image_embedder(root: Path) -> Path:
    """The MobileNetV2 image embedder bundle (built on first use under ``root``)."""
    if "image" not in _built:
        import torch

        from arcsearch.index.bundle import ImagePreprocessing
        from arcsearch.training.backbones import build_image_encoder
        from arcsearch.training.export import export_image_embedder

        torch.manual_seed(0)
        encoder = build_image_encoder("mobilenet_v2", embedding_dim=128,
                                      checkpoint=prepared().mobilenet_weights).eval()
        _built["image"] = export_image_embedder(encoder, root / "image-embedder", embedding_dim=128,
                                                preprocessing=ImagePreprocessing(), backbone="mobilenet_v2")
    return _built["image"]


def text_embedder(root: Path) -> Path:
    """The all-MiniLM-L6-v2 text embedder bundle (built on first use under ``root``)."""
    if "text" not in _built:
        from sentence_transformers import SentenceTransformer

        from arcsearch.training.export import export_text_embedder

        model = SentenceTransformer(str(prepared().minilm_dir), device="cpu")
        _built["text"] = export_text_embedder(model, root / "text-embedder", backbone="all-MiniLM-L6-v2")
    return _built["text"]


def glosses_by_class(num_classes: int, per_class: int) -> dict[str, list[dict[str, Any]]]:
    """The first ``num_classes`` labels (sorted) of the WordNet glosses with at least ``per_class`` rows."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in prepared().texts_file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        groups[row["label"]].append(row)
    labels = sorted(label for label, rows in groups.items() if len(rows) >= per_class)[:num_classes]
    return {label: groups[label][:per_class] for label in labels}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def fake_embedder_bundle(folder: Path, *, modality: str = "text", dim: int = 8, seed: int = 0) -> Path:
    """A bundle with a manifest and dummy weights: enough for collection bookkeeping, not for embedding."""
    weights = folder / "model"
    weights.mkdir(parents=True)
    (weights / "weights.bin").write_bytes(np.random.default_rng(seed).bytes(64))
    manifest = EmbedderManifest(modality=modality, embedding_dim=dim, weights_file="model",  # type: ignore[arg-type]
                                weights_sha256=sha256_of_path(weights))
    write_manifest(folder, manifest)
    return folder


def unit_vectors(n: int, dim: int, *, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 random unit vectors."""
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_table(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as a .csv (union of keys as header, empty cells where a row lacks one), .jsonl or .parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if path.suffix == ".jsonl":
        write_jsonl(path, rows)
    elif path.suffix == ".csv":
        lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: [row.get(c) for row in rows] for c in columns}), path)
    return path


def with_text_policy(bundle: Path, out: Path, **policy: Any) -> Path:
    """A copy at ``out`` of the text embedder ``bundle`` whose manifest's text policy has the fields ``policy``
    (the weights, and so the weights hash, are the same)."""
    import shutil

    from arcsearch.index.bundle import read_embedder_manifest

    manifest = read_embedder_manifest(Path(shutil.copytree(bundle, out)))
    assert manifest.text is not None
    write_manifest(out, manifest.model_copy(update={"text": manifest.text.model_copy(update=policy)}))
    return out
