"""Hostile embedder bundles for the loading tests: pickle payloads that would leave a marker file if run."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from arcsearch.index.bundle import sha256_of_path


class Payload:
    """Unpickling this runs ``exec``, which writes ``marker``: proof that loading ran foreign code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def pickle_payload(path: Path, marker: Path) -> Path:
    """A file written by ``torch.save`` whose unpickling writes ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(Payload(marker), path)
    return path


def _payload_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


def legacy_pt2(path: Path, marker: Path) -> Path:
    """A ``torch.export`` archive as format-1 bundles held, one weight swapped for a pickle payload.

    Its weights config marks that weight ``use_pickle``, so ``torch.export.load`` (torch 2.13) reads it
    with ``torch.load(weights_only=False)`` and runs the payload.
    """
    program = torch.export.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),))
    plain = path.with_name("plain.pt2")
    torch.export.save(program, str(plain))
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w") as target:
        config_name = next(n for n in source.namelist() if n.endswith("data/weights/model_weights_config.json"))
        config = json.loads(source.read(config_name))
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        weight_name = config_name.rsplit("/", 1)[0] + "/" + first["path_name"]
        for info in source.infolist():
            data = {config_name: json.dumps(config).encode(), weight_name: _payload_bytes(marker)}.get(
                info.filename, source.read(info))
            target.writestr(info, data)
    plain.unlink()
    return path


def legacy_image_bundle(folder: Path, marker: Path) -> Path:
    """A format-1 image embedder bundle (``model.pt2``) whose weights run a payload when loaded."""
    folder.mkdir(parents=True)
    weights = legacy_pt2(folder / "model.pt2", marker)
    manifest = {"format": "arcsearch.embedder", "format_version": 1, "modality": "image", "embedding_dim": 2,
                "normalized": True, "weights_file": "model.pt2", "weights_sha256": sha256_of_path(weights),
                "image": {"height": 8, "width": 8, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def copy_bundle(source: Path, target: Path) -> Path:
    """A writable copy of a bundle folder, to be altered by a test."""
    return Path(shutil.copytree(source, target))
