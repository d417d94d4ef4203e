"""A collection indexed the way ``arcsearch demo`` (``make demo``) indexes it, for the page's tests.

The demo runs in the repository folder, prepares the faces into ``data/faces`` and calls
``index_collection(collections_dir, "images", embedder, Path("data") / "faces")``: a corpus path relative to
the working directory. It then serves with ``data_root=Path("data").resolve()``.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from arcsearch.index.collections import index_collection


@dataclass(frozen=True)
class DemoLayout:
    collections_dir: Path  # absolute
    data_root: Path  # absolute, as the demo passes it to the server


def index_like_the_demo(work_dir: Path, *, embedder: Path, faces: Path, people: list[str],
                        numbers: list[int]) -> DemoLayout:
    """Copy ``people`` x ``numbers`` faces to ``work_dir/data/faces`` and index them from inside ``work_dir``
    with the relative corpus path the demo gives; the working directory is restored afterwards."""
    for person in people:
        (work_dir / "data" / "faces" / person).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            shutil.copy(faces / person / f"{n}.pgm", work_dir / "data" / "faces" / person / f"{n}.pgm")
    with contextlib.chdir(work_dir):
        data_dir = Path("data")
        index_collection(Path("artifacts") / "collections", "images", embedder, data_dir / "faces", device="cpu")
        return DemoLayout((Path("artifacts") / "collections").resolve(), data_dir.resolve())
