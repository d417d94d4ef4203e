"""Re-index sources given over HTTP: relative paths that must stay inside the data root."""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath

from index.corpus import ImageItem
from service.errors import InvalidSourceError, SourceOutsideDataRootError

logger = logging.getLogger(__name__)

URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, file:, s3:, ...


def resolve_source(data_root: Path, source: str) -> Path:
    """The real path of ``source`` below ``data_root``.

    Refuses URLs and NUL bytes (400), absolute paths, ``..`` parts and symlinks that lead outside
    the root (403), and paths that do not exist (400).
    """
    if URL_PATTERN.match(source) or source.startswith("//") or "\\" in source:
        raise InvalidSourceError("'source' must be a path relative to the data root, not a URL")
    if "\x00" in source:
        raise InvalidSourceError("'source' contains a NUL byte")
    path = PurePosixPath(source)
    if path.is_absolute() or source.startswith("~"):
        raise SourceOutsideDataRootError("'source' must be relative to the data root; absolute paths are refused")
    if ".." in path.parts:
        raise SourceOutsideDataRootError("'source' must not contain '..'")
    try:
        root = Path(data_root).resolve(strict=True)
    except OSError as exc:
        raise InvalidSourceError("the server's data root does not exist; re-index from a path is off") from exc
    try:
        resolved = (root / path).resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise InvalidSourceError(f"source {source!r} does not exist under the data root") from exc
    if not resolved.is_relative_to(root):
        raise SourceOutsideDataRootError(f"source {source!r} leads outside the data root (a symlink?)")
    return resolved


def inside_root(items: list[ImageItem], data_root: Path) -> list[ImageItem]:
    """Drop (and log) image files whose real path is outside ``data_root``, e.g. symlinks out of it."""
    root = Path(data_root).resolve()
    kept = [item for item in items if item.path.resolve().is_relative_to(root)]
    if len(kept) < len(items):
        logger.warning("ignored %d image files that lead outside the data root", len(items) - len(kept))
    return kept
