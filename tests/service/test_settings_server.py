"""Settings from ARCSEARCH_* variables; serve() refuses non-loopback hosts unless allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from arcsearch.service import server
from arcsearch.service.server import UnsafeHostError, check_host, is_loopback, serve
from arcsearch.service.settings import Settings


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARCSEARCH_PORT", "9123")
    monkeypatch.setenv("ARCSEARCH_DEVICE", "cpu")
    monkeypatch.setenv("ARCSEARCH_COLLECTIONS_DIR", str(tmp_path))
    monkeypatch.setenv("ARCSEARCH_MAX_K", "7")
    settings = Settings()
    assert (settings.port, settings.device, settings.collections_dir, settings.max_k) == (9123, "cpu", tmp_path, 7)
    assert settings.host == "127.0.0.1"
    monkeypatch.setenv("ARCSEARCH_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.5", True), ("::1", True),
                                                ("localhost", True), ("0.0.0.0", False), ("::", False),
                                                ("192.168.1.10", False), ("example.com", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_refuses_a_public_host_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(server.uvicorn, "run", lambda app, host, port, **_: calls.append((host, port)))
    with pytest.raises(UnsafeHostError, match="no authentication"):
        serve(Settings(host="0.0.0.0", collections_dir=Path("nowhere")))
    assert calls == []
    check_host(Settings(host="0.0.0.0", allow_non_loopback=True))
    serve(Settings(host="127.0.0.1", port=8123, collections_dir=Path("nowhere")))
    assert calls == [("127.0.0.1", 8123)]


@pytest.mark.parametrize("variable", ["ARCSEARCH_ADMIN_KEYS", "ARCSEARCH_READ_KEYS"])
def test_a_short_key_is_refused_naming_the_variable_not_the_key(monkeypatch: pytest.MonkeyPatch,
                                                                variable: str) -> None:
    monkeypatch.setenv(variable, "long-enough-key-0123456789, hunter2")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert variable in str(raised.value) and "16 characters" in str(raised.value)
    assert "hunter2" not in str(raised.value) and "long-enough" not in str(raised.value)
    monkeypatch.setenv(variable, "long-enough-key-0123456789,another-long-key-0123")
    assert Settings().auth_enabled


def test_json_bodies_get_a_small_limit_and_uploads_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.max_json_bytes == 1024 * 1024 < settings.max_upload_bytes < settings.max_request_bytes
    assert settings.item_upsert_bytes == 4 * -(-settings.max_upload_bytes // 3) + settings.max_json_bytes
    monkeypatch.setenv("ARCSEARCH_MAX_JSON_BYTES", "4096")
    monkeypatch.setenv("ARCSEARCH_ALLOWED_HOSTS", " Search.Internal ,,proxy")
    settings = Settings()
    assert settings.max_json_bytes == 4096 and settings.allowed_host_set == {"search.internal", "proxy"}
