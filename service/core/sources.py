"""Re-index sources given over HTTP: relative paths that must stay inside the data root."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from arcsearch.index.corpus import CorpusError, ImageItem, TextItem, text_item
from arcsearch.index.metadata import MetadataError, check_item_id
from arcsearch.index.tables import table_rows
from arcsearch.service.core.errors import InvalidSourceError, SourceOutsideDataRootError

logger = logging.getLogger(__name__)

URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, file:, s3:, ...


def resolve_source(data_root: Path, source: str, *, field: str = "source") -> Path:
    """The real path of ``source`` (the request's ``field``) below ``data_root``.

    Refuses URLs, NUL bytes and paths that do not exist (InvalidSourceError), and absolute paths, ``..``
    parts and symlinks that lead outside the root (SourceOutsideDataRootError).
    """
    if URL_PATTERN.match(source) or source.startswith("//") or "\\" in source:
        raise InvalidSourceError(f"{field!r} must be a path relative to the data root, not a URL")
    if "\x00" in source:
        raise InvalidSourceError(f"{field!r} contains a NUL byte")
    path = PurePosixPath(source)
    if path.is_absolute() or source.startswith("~"):
        raise SourceOutsideDataRootError(f"{field!r} must be relative to the data root; absolute paths are refused")
    if ".." in path.parts:
        raise SourceOutsideDataRootError(f"{field!r} must not contain '..'")
    try:
        root = Path(data_root).resolve(strict=True)
    except OSError as exc:
        raise InvalidSourceError(f"the server's data root does not exist; {field!r} paths are off") from exc
    try:
        resolved = (root / path).resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise InvalidSourceError(f"{field} {source!r} does not exist under the data root") from exc
    if not resolved.is_relative_to(root):
        raise SourceOutsideDataRootError(f"{field} {source!r} leads outside the data root (a symlink?)")
    return resolved


def inside_root(items: list[ImageItem], data_root: Path) -> list[ImageItem]:
    """Drop (and log) image files whose real path is outside ``data_root``, e.g. symlinks out of it."""
    root = Path(data_root).resolve()
    kept = [item for item in items if item.path.resolve().is_relative_to(root)]
    if len(kept) < len(items):
        logger.warning("ignored %d image files that lead outside the data root", len(items) - len(kept))
    return kept


@dataclass(frozen=True)
class LoadedItems:
    """Items read from a source, and the rows that could not become items: (item or row id, reason)."""

    items: list[Any]
    failures: list[tuple[str, str]] = field(default_factory=list)


def read_texts_tolerant(path: Path) -> LoadedItems:
    """Read a .jsonl/.csv/.parquet text corpus like index.corpus.read_text_file, but a bad row (not JSON, an empty
    text, no label, a value index.metadata refuses) becomes a recorded failure instead of failing the whole
    file. A failure names the row by its id, or by ``line N`` when the id itself is unusable."""
    items: list[TextItem] = []
    failures: list[tuple[str, str]] = []
    for number, row, reason in table_rows(Path(path)):
        if row is None:
            failures.append((f"line {number}", reason))
            continue
        try:
            items.append(text_item(row, number))
        except CorpusError as exc:
            failures.append((_failure_id(row.get("id"), number), str(exc)))
    return LoadedItems(items, failures)


def _failure_id(given: Any, number: int) -> str:
    """The row's id for a failure report, or ``line N`` when it could not be shown or stored as it is."""
    try:
        return check_item_id(str(given)) if given else str(number)
    except MetadataError:
        return f"line {number}"
