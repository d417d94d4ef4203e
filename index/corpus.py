"""Reading labelled corpora in the generic layouts: a folder per class of images; JSONL or CSV texts."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcsearch.index.metadata import MetadataError, check_item_id, check_metadata, check_text

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


class CorpusError(ValueError):
    """A corpus file or folder is missing or malformed."""


@dataclass(frozen=True)
class ImageItem:
    """One labelled image file; ``item_id`` is unique within the corpus (``label/filename``)."""

    item_id: str
    path: Path
    label: str


@dataclass(frozen=True)
class TextItem:
    """One labelled text; ``metadata`` holds any extra JSONL fields or CSV columns."""

    item_id: str
    text: str
    label: str
    metadata: dict[str, Any] = field(default_factory=dict)


def read_image_folder(root: Path) -> list[ImageItem]:
    """List ``root/<label>/<image>`` files, sorted; raises CorpusError if none are found."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"image folder {root} does not exist")
    items = [
        ImageItem(item_id=f"{class_dir.name}/{path.name}", path=path, label=class_dir.name)
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(class_dir.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not items:
        raise CorpusError(f"no images found in sub-folders of {root} (expected {root}/<label>/<image>)")
    return items


def text_item(row: Any, number: int) -> TextItem:
    """The item of one JSONL row or CSV record (``number`` is its id when it has none); CorpusError with the
    reason (no file or row prefix) when it holds no usable text or label, or a value that must not be
    stored (see index.metadata)."""
    if not isinstance(row, dict):
        raise CorpusError("not a JSON object")
    text, label = row.get("text"), row.get("label")
    if not isinstance(text, str) or not text.strip():
        raise CorpusError("empty text: 'text' must be a non-empty string")
    if label is None or str(label).strip() == "":
        raise CorpusError("'label' is missing")
    metadata = {k: v for k, v in row.items() if k not in {"id", "text", "label"}}
    try:
        return TextItem(item_id=check_item_id(str(row.get("id") or number)),
                        text=check_text(text.strip(), field="text"), label=check_text(str(label), field="label"),
                        metadata=check_metadata(metadata))
    except MetadataError as exc:
        raise CorpusError(str(exc)) from None


def read_text_file(path: Path) -> list[TextItem]:
    """Read ``{"text", "label"[, "id", ...]}`` rows from a .jsonl file or a .csv file with a header."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"text file {path} does not exist")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    elif path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError) as exc:
                raise CorpusError(f"{path} line {number} is not JSON: {exc}") from None
    else:
        raise CorpusError(f"{path}: expected a .jsonl or .csv file")
    items = []
    for number, row in enumerate(rows, start=1):
        try:
            items.append(text_item(row, number))
        except CorpusError as exc:
            raise CorpusError(f"{path} row {number}: {exc}") from None
    if not items:
        raise CorpusError(f"{path} holds no texts")
    if len({item.item_id for item in items}) != len(items):
        raise CorpusError(f"{path}: the 'id' values are not unique")
    return items
