"""/readyz: only the state for a request without a key; names and reasons with a key; never an absolute path."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from arcsearch.service.app import create_app
from arcsearch.service.core.paths import scrub_paths, settings_roots
from tests.service.helpers import ServiceData, assert_error, local_client, service_settings, wait_ready

KEY = "readyz-read-key-0123456789"
ABSOLUTE = re.compile(r"(^|[\s'\"(])/")


@pytest.fixture(scope="module")
def broken(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app over a working and a broken collection (its CURRENT names no version)."""
    collections = tmp_path_factory.mktemp("readyz") / "collections"
    for name in ("ok", "broken"):
        shutil.copytree(service_data.collections_dir / "scratch", collections / name)
        info = collections / name / "collection.json"
        info.write_text(info.read_text().replace('"scratch"', f'"{name}"'))
    (collections / "broken" / "CURRENT").write_text("../../../etc\n")
    settings = service_settings(service_data, collections_dir=collections, read_keys=SecretStr(KEY))
    with local_client(create_app(settings)) as client:
        wait_ready(client)
        yield client


def test_a_stranger_learns_only_that_it_is_not_ready(broken: TestClient) -> None:
    error = assert_error(broken.get("/readyz"), 503, "not_ready")
    assert error["details"] is None and "broken" not in str(error)


def test_with_a_key_the_reasons_carry_no_absolute_path(broken: TestClient) -> None:
    error = assert_error(broken.get("/readyz", headers={"Authorization": f"Bearer {KEY}"}), 503, "not_ready")
    assert set(error["details"]) == {"broken"}, error
    reason = error["details"]["broken"]
    assert "broken/CURRENT" in reason and not ABSOLUTE.search(reason), reason


def test_without_keys_the_reasons_are_shown_relative(broken: TestClient) -> None:
    state = broken.app.state  # type: ignore[attr-defined]
    keyed = state.settings
    state.settings = keyed.model_copy(update={"read_keys": SecretStr("")})
    try:
        error = assert_error(broken.get("/readyz"), 503, "not_ready")
    finally:
        state.settings = keyed
    assert "broken/CURRENT" in error["details"]["broken"] and not ABSOLUTE.search(error["details"]["broken"])


def test_paths_outside_the_roots_keep_only_their_last_part(service_data: ServiceData, tmp_path: Path) -> None:
    settings: Any = service_settings(service_data)
    text = (f"cannot read {settings.collections_dir}/a/CURRENT, {service_data.data_root.resolve()}/x.jsonl, "
            "/usr/lib/python3/site.py and '/etc/passwd'; a/b stays")
    assert scrub_paths(text, settings_roots(settings)) == ("cannot read a/CURRENT, x.jsonl, site.py and 'passwd'; "
                                                           "a/b stays")
