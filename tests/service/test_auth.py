"""API keys: 401 without a valid key, 403 for a read-only key on admin routes, open health probes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from arcsearch.service.server import UnsafeHostError, check_host
from arcsearch.service.settings import Settings
from tests.service.helpers import assert_error

READ, ADMIN = "read-key-0123456789", "admin-key-0123456789"
REINDEX_UNKNOWN = {"collection": "nope", "source": "texts.jsonl"}  # 404 once past auth: no side effects


@pytest.fixture()
def keyed(client: TestClient) -> Iterator[TestClient]:
    """The shared client with keys switched on for one test."""
    state = client.app.state  # type: ignore[attr-defined]
    plain = state.settings
    state.settings = plain.model_copy(update={"read_keys": SecretStr(f"{READ}, other-read-key-0123"),
                                              "admin_keys": SecretStr(ADMIN)})
    try:
        yield client
    finally:
        state.settings = plain


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/collections/texts/search", {"text": "a dog"}), ("GET", "/v1/collections", None),
    ("GET", "/v1/jobs/0123", None), ("GET", "/metrics", None), ("POST", "/v1/reindex", REINDEX_UNKNOWN)])
def test_routes_need_a_valid_key(keyed: TestClient, method: str, path: str, body: dict | None) -> None:
    for headers in ({}, bearer("wrong"), {"Authorization": f"Basic {READ}"}, {"Authorization": "Bearer "}):
        response = keyed.request(method, path, json=body, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def test_read_key_reads_admin_key_administers(keyed: TestClient) -> None:
    for key in (READ, "other-read-key-0123", ADMIN):
        response = keyed.post("/v1/collections/texts/search", json={"text": "a dog"}, headers=bearer(key))
        assert response.status_code == 200
        assert keyed.get("/v1/collections", headers=bearer(key)).status_code == 200
    assert_error(keyed.post("/v1/reindex", json=REINDEX_UNKNOWN, headers=bearer(READ)), 403, "forbidden")
    assert_error(keyed.post("/v1/reindex", json=REINDEX_UNKNOWN, headers=bearer(ADMIN)), 404, "collection_not_found")
    assert keyed.get("/healthz").status_code == 200 and keyed.get("/readyz").status_code == 200


def test_no_keys_means_open_routes(client: TestClient) -> None:
    assert client.get("/v1/collections").status_code == 200


def test_bind_rules(caplog: pytest.LogCaptureFixture) -> None:
    nowhere = Path("nowhere")
    with caplog.at_level(logging.WARNING, logger="arcsearch.service.server"):
        check_host(Settings(host="127.0.0.1", collections_dir=nowhere))
    assert "no API keys configured" in caplog.text and "loopback only" in caplog.text
    with pytest.raises(UnsafeHostError, match="no API keys"):
        check_host(Settings(host="0.0.0.0", collections_dir=nowhere))
    check_host(Settings(host="0.0.0.0", admin_keys=SecretStr(ADMIN)))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="arcsearch.service.server"):
        check_host(Settings(host="0.0.0.0", allow_non_loopback=True))
    assert "UNAUTHENTICATED" in caplog.text


def test_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCSEARCH_READ_KEYS", " read-key-aaaaaaaaaa, read-key-bbbbbbbbbb ,,")
    monkeypatch.setenv("ARCSEARCH_ADMIN_KEYS", "s3cr3t-admin-0123456789")
    settings = Settings()
    assert settings.read_key_set == {"read-key-aaaaaaaaaa", "read-key-bbbbbbbbbb"} and settings.auth_enabled
    assert settings.admin_key_set == {"s3cr3t-admin-0123456789"}
    assert "s3cr3t-admin" not in repr(settings)
