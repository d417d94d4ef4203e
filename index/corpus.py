"""Reading corpora: a folder per class of images, or a manifest table (CSV, JSONL or Parquet) of image paths
or texts, with optional labels, ids and metadata columns.

Indexing and search need no label (an unlabelled item has ``label=None``); training does
(``require_labels``). Every reader checks the whole corpus before returning, so that a bad manifest (a
missing column or file, a duplicate id) fails with a message naming the row and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcsearch.index.metadata import MetadataError, check_item_id, check_metadata, check_text
from arcsearch.index.tables import TableError, is_table, table_columns, table_rows

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
RESERVED_COLUMNS = frozenset({"id", "path", "text", "label"})


class CorpusError(ValueError):
    """A corpus file or folder is missing or malformed."""


@dataclass(frozen=True)
class ImageItem:
    """One image file. ``item_id`` is unique within the corpus; ``source`` is the path as the corpus names it
    (``label/filename`` in a class folder, the manifest's ``path`` value), relative to the corpus folder."""

    item_id: str
    path: Path
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class TextItem:
    """One text; ``metadata`` holds any extra JSONL fields or CSV / Parquet columns."""

    item_id: str
    text: str
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def read_image_folder(root: Path) -> list[ImageItem]:
    """List ``root/<label>/<image>`` files, sorted; raises CorpusError if none are found."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"image folder {root} does not exist")
    items = [
        ImageItem(item_id=f"{class_dir.name}/{path.name}", path=path, label=class_dir.name,
                  source=f"{class_dir.name}/{path.name}")
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(class_dir.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not items:
        raise CorpusError(f"no images found in sub-folders of {root} (expected {root}/<label>/<image>)")
    return items


def _label(row: dict[str, Any]) -> str | None:
    """The row's label as text, or None when it has none (a missing key, null or an empty string)."""
    label = row.get("label")
    if label is None or str(label).strip() == "":
        return None
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise CorpusError(f"'label' must be text or an integer, not {type(label).__name__}")
    return check_text(str(label), field="label")


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    return check_metadata({k: v for k, v in row.items() if k not in RESERVED_COLUMNS})


def text_item(row: Any, number: int) -> TextItem:
    """The item of one table row (``number`` is its id when it has none); CorpusError with the reason (no
    file or row prefix) when it holds no usable text, or a value that must not be stored (index.metadata)."""
    if not isinstance(row, dict):
        raise CorpusError("not a JSON object")
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise CorpusError("empty text: 'text' must be a non-empty string")
    try:
        return TextItem(item_id=check_item_id(str(row.get("id") or number)),
                        text=check_text(text.strip(), field="text"), label=_label(row), metadata=_metadata(row))
    except MetadataError as exc:
        raise CorpusError(str(exc)) from None


def image_item(row: dict[str, Any], number: int, folder: Path, *, confine_to: Path | None = None) -> ImageItem:
    """The item of one image-manifest row: ``path`` (relative to the manifest's ``folder``, or absolute) must
    name an existing file (below ``confine_to`` when given); ``id`` defaults to the path as written."""
    given = row.get("path")
    if not isinstance(given, str) or not given.strip():
        raise CorpusError("'path' is missing or empty")
    path = (folder / given).resolve()
    if confine_to is not None and not path.is_relative_to(Path(confine_to).resolve()):
        raise CorpusError(f"image file {given!r} lies outside the data root")
    if not path.is_file():
        raise CorpusError(f"image file {given!r} does not exist")
    try:
        return ImageItem(item_id=check_item_id(str(row.get("id") or given)), path=path, label=_label(row),
                         metadata=_metadata(row), source=given)
    except MetadataError as exc:
        raise CorpusError(str(exc)) from None


def require_column(path: Path, column: str) -> None:
    """CorpusError unless the CSV or Parquet table at ``path`` has ``column`` (JSONL rows are checked one by one)."""
    columns = table_columns(path)
    if columns is not None and column not in columns:
        raise CorpusError(f"{path} has no {column!r} column (its columns: {', '.join(columns) or 'none'})")


def _check_unique(path: Path, items: Sequence[ImageItem | TextItem], numbers: Sequence[int]) -> None:
    first_row: dict[str, int] = {}
    for item, number in zip(items, numbers, strict=True):
        if item.item_id in first_row:
            raise CorpusError(f"{path} row {number}: id {item.item_id!r} is already used by row "
                              f"{first_row[item.item_id]}; ids must be unique")
        first_row[item.item_id] = number


def _read_table(path: Path, column: str, make_item: Any) -> list[Any]:
    """Items of every row of the table at ``path`` (``column`` required); CorpusError naming the bad row."""
    path = Path(path)
    try:
        require_column(path, column)
        items, numbers = [], []
        for number, row, reason in table_rows(path):
            try:
                if row is None:
                    raise CorpusError(reason)
                items.append(make_item(row, number))
            except CorpusError as exc:
                raise CorpusError(f"{path} row {number}: {exc}") from None
            numbers.append(number)
    except TableError as exc:
        raise CorpusError(str(exc)) from None
    if not items:
        raise CorpusError(f"{path} holds no rows")
    _check_unique(path, items, numbers)
    return items


def read_text_file(path: Path) -> list[TextItem]:
    """Read ``{"text"[, "label", "id", ...]}`` rows from a .jsonl, .csv (with a header) or .parquet file."""
    return _read_table(path, "text", text_item)


def read_image_manifest(path: Path, *, confine_to: Path | None = None) -> list[ImageItem]:
    """Read ``{"path"[, "label", "id", ...]}`` rows from a .csv, .jsonl or .parquet manifest of image files;
    relative paths are below the manifest's folder, and every file must exist (below ``confine_to``)."""
    folder = Path(path).resolve().parent
    return _read_table(path, "path", lambda row, number: image_item(row, number, folder, confine_to=confine_to))


def read_corpus(source: Path, modality: str) -> list[ImageItem] | list[TextItem]:
    """Images: a folder of class sub-folders or an image manifest; texts: a text table."""
    source = Path(source)
    if modality == "image":
        if source.is_dir():
            return read_image_folder(source)
        if source.is_file() and is_table(source):
            return read_image_manifest(source)
        raise CorpusError(f"an image corpus is a folder of class sub-folders or a .csv/.jsonl/.parquet manifest; "
                          f"{source} is neither")
    if modality == "text":
        if not source.is_file():
            raise CorpusError(f"a text corpus is a .jsonl, .csv or .parquet file; {source} is not a file")
        return read_text_file(source)
    raise CorpusError(f"unknown modality {modality!r}")


def require_labels(items: Sequence[ImageItem | TextItem], *, what: str = "training") -> list[str]:
    """Every item's label; CorpusError naming the first unlabelled item (``what`` says who needs them)."""
    for item in items:
        if item.label is None:
            raise CorpusError(f"{what} needs a label on every item; item {item.item_id!r} has none")
    return [str(item.label) for item in items]
