"""Constants and small helpers of the client tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.service.helpers import ServiceData

READ_KEY, ADMIN_KEY = "client-read-key-0123456789", "client-admin-key-0123456789"
TEXT_EMBEDDER, IMAGE_EMBEDDER = "embedders/text", "embedders/image"
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Live:
    """The live server of the client tests: its URL, its data root, and the shared test data."""

    url: str
    data_root: Path
    data: ServiceData


def face(data: ServiceData, person: str = "s31", number: int = 1) -> Path:
    """A held-out face (not among the six of the client data root)."""
    return data.faces_dir / person / f"{number}.pgm"


def query_texts(data: ServiceData, count: int = 3) -> list[str]:
    """Texts not indexed in ``texts``, one per class."""
    return [row["text"] for row in data.query_texts[:count]]
