"""Helpers for tests/service: the shared test data description, settings, and the error-shape check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.settings import Settings

HELD_OUT_PEOPLE = [f"s{n}" for n in range(31, 41)]


@dataclass(frozen=True)
class ServiceData:
    collections_dir: Path
    data_root: Path
    faces_dir: Path
    indexed_texts: list[dict[str, Any]]
    query_texts: list[dict[str, Any]]
    image_embedder: Path
    text_embedder: Path


def service_settings(data: ServiceData, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"collections_dir": data.collections_dir, "data_root": data.data_root,
                              "device": "cpu", "batch_size": 8} | overrides
    return Settings(**values)


def wait_ready(client: TestClient, timeout_s: float = 120.0) -> None:
    registry = client.app.state.registry  # type: ignore[attr-defined]
    assert registry.wait_ready(timeout_s), "collections did not load in time"


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response has ``status`` and exactly the one error shape with ``code``; returns the error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body["error"]
