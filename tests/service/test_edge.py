"""The edge in-process: the role of every route comes from its dependencies, every body limit names a route,
OpenAPI documents the bearer scheme, JSON depth is measured on the bytes."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from arcsearch.service.app import body_limits, create_app
from arcsearch.service.auth import needed_role
from arcsearch.service.limits import MAX_JSON_DEPTH, json_depth
from arcsearch.service.routetable import flat_routes, route_template
from arcsearch.service.settings import Settings
from tests.service.helpers import assert_error, local_client

OPEN = {"/healthz", "/readyz", "/", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


@pytest.fixture(scope="module")
def routes() -> list:
    return list(flat_routes(create_app(Settings(collections_dir=Path("nowhere"))).router.routes))


def test_every_api_route_needs_a_key_and_only_probes_docs_and_the_page_are_open(routes: list) -> None:
    roles = {(route_template(r), m): needed_role(r) for r in routes for m in (getattr(r, "methods", None) or {""})}
    assert {path for (path, _), role in roles.items() if role is None} == OPEN
    for (path, method), role in roles.items():
        if path.startswith("/v1/"):
            writes = method in {"PUT", "DELETE"} or path in {"/v1/reindex", "/v1/jobs/{job_id}/cancel"} or (
                path, method) == ("/v1/collections", "POST")
            assert role == ("admin" if writes else "read"), (path, method, role)
    assert roles[("/metrics", "GET")] == "read"
    assert needed_role(None) == "read"  # a path no route serves tells nothing without a key


def test_every_body_limit_names_a_route(routes: list) -> None:
    templates = {route_template(r) for r in routes}
    settings = Settings(collections_dir=Path("nowhere"))
    assert set(body_limits(settings)) <= templates
    assert min(body_limits(settings).values()) > settings.max_json_bytes


def test_openapi_documents_the_bearer_scheme(routes: list) -> None:
    spec = local_client(create_app(Settings(collections_dir=Path("nowhere")))).get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert (operation.get("security") == [{"HTTPBearer": []}]) == (path not in OPEN), path


@pytest.mark.parametrize(("text", "depth"), [("1", 0), ('"[[["', 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4),
                                             ('["\\\\", [[]], "\\"[["]', 3), ('{"a": "x\\"[[[["}', 1),
                                             ("[" * 5000 + "]" * 5000, 5000)])
def test_json_depth_ignores_brackets_in_strings(text: str, depth: int) -> None:
    assert json_depth(text.encode()) == depth
    if depth < 500:
        def real(value: object) -> int:
            return 1 + max(map(real, value.values() if isinstance(value, dict) else value), default=0) \
                if isinstance(value, dict | list) else 0
        assert real(json.loads(text)) == depth


def test_json_depth_runs_in_chunks_on_large_bodies() -> None:
    body = b"[" + b"[[]]," * 600_000 + b"[" * 40 + b"]" * 40 + b"]"
    assert len(body) > 2 * (1 << 20) and json_depth(body) == 41


def test_a_request_the_key_check_refuses_is_not_read(tmp_path: Path) -> None:
    """The 401 comes from the headers alone; the body is never received (the app would hang on it)."""
    app = create_app(Settings(collections_dir=tmp_path, admin_keys=SecretStr("edge-admin-key-0123456789")))
    received: list[str] = []

    async def call() -> list[dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            received.append("body")
            raise AssertionError("the body was read")

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/collections/texts/search",
                 "raw_path": b"/v1/collections/texts/search",
                 "query_string": b"", "root_path": "", "scheme": "http", "server": ("127.0.0.1", 8000),
                 "client": ("127.0.0.1", 5000), "http_version": "1.1", "app": app,
                 "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                             (b"content-length", b"67108864")]}
        await app(scope, receive, send)
        return sent

    sent = anyio.run(call)
    assert sent[0]["status"] == 401 and not received
    assert (b"connection", b"close") in sent[0]["headers"]


def test_max_json_depth_leaves_room_for_the_deepest_metadata() -> None:
    from arcsearch.index.metadata import MAX_METADATA_DEPTH
    assert MAX_METADATA_DEPTH + 3 <= MAX_JSON_DEPTH < 900  # far below Python's recursion limit


def test_a_path_with_a_control_character_is_a_422(tmp_path: Path) -> None:
    client = local_client(create_app(Settings(collections_dir=tmp_path)))
    assert_error(client.put("/v1/collections/x/items/a%0Ab", json={"text": "x"}), 422, "validation_error")
    assert_error(client.get("/v1/collections/x/items/a%C2%85b"), 422, "validation_error")
