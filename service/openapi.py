"""The OpenAPI document: FastAPI's, completed so that it states every rule the server enforces.

A generated client (or a schema-driven tester such as schemathesis) should not be able to build a request
the server rejects for its form. On top of what the models say, this adds:
- the limits this server is configured with (``max_k``, ``max_text_chars``, ``max_batch_texts``,
  ``max_batch_images``, ``max_reindex_items``, ``max_upload_bytes``), tighter than the schemas' hard caps;
- the two bodies of ``POST /v1/collections/{name}/search`` (JSON and multipart) as components;
- 401 (and 403 on admin routes) wherever a route needs a key, and the service's one error shape for 422;
- the signed 64-bit bounds (metadata numbers, filter integers) as exact integers: FastAPI's OpenAPI model
  holds bounds as floats, and float(2**63 - 1) is 2**63, a value the server refuses.
What a schema cannot say (a file under the data root, the collection's modality or dimension, whether an
upload decodes as an image) is refused with 400 / 404 / 409 / 413 / 415, never 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from arcsearch.index.metadata import INT64_MAX, INT64_MIN
from arcsearch.service.auth import needed_role
from arcsearch.service.routers.search import UPLOAD_SCHEMA
from arcsearch.service.routetable import flat_routes
from arcsearch.service.schemas import ErrorResponse
from arcsearch.service.search_schemas import SearchRequest, upload_form_schema
from arcsearch.service.settings import Settings

REF_PREFIX = "#/components/schemas/"
ERROR_CONTENT = {"application/json": {"schema": {"$ref": f"{REF_PREFIX}ErrorResponse"}}}
EXACT_BOUNDS = {float(bound): bound for bound in (INT64_MIN, INT64_MAX)}
AUTH_RESPONSES = {"401": "no API key, or an unknown one", "403": "the API key is read-only; this needs an admin key"}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve ``openapi_document`` at /openapi.json (built once, on first request)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app, settings)
        return app.openapi_schema
    app.openapi = openapi  # type: ignore[method-assign]


def openapi_document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's document of ``app`` with the additions of the module docstring."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (SearchRequest, ErrorResponse):
        add_model(components, model)
    components[UPLOAD_SCHEMA] = upload_form_schema(settings.max_batch_images)
    configured = configured_limits(settings)
    seen: set[str] = set()
    for schema in request_body_schemas(doc):
        tighten(schema, configured, components, seen)
    document_errors(doc, app)
    exact_bounds(doc)
    return doc


def exact_bounds(node: Any) -> None:
    """Each ``minimum``/``maximum`` that is a signed 64-bit bound rounded to a float, written back exactly."""
    if isinstance(node, list):
        for child in node:
            exact_bounds(child)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("minimum", "maximum") and isinstance(value, float) and value in EXACT_BOUNDS:
                node[key] = EXACT_BOUNDS[value]
            else:
                exact_bounds(value)


def add_model(components: dict[str, Any], model: type[BaseModel]) -> None:
    """``model``'s schema (and the models it refers to) into the components, if not there yet."""
    schema = model.model_json_schema(ref_template=REF_PREFIX + "{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(model.__name__, schema)


def configured_limits(settings: Settings) -> dict[str, dict[str, Any]]:
    """Request properties by name -> the keywords stating this server's configured limits on them."""
    text = {"maxLength": settings.max_text_chars}
    return {"k": {"maximum": settings.max_k}, "text": text,
            "texts": {"maxItems": settings.max_batch_texts, "items": text},
            "file": {"maxItems": settings.max_batch_images, "minItems": 1, "items": {"minLength": 1}},
            "items": {"maxItems": settings.max_reindex_items},
            "image_base64": {"maxLength": 4 * (settings.max_upload_bytes // 3)}}  # decodes to at most that


def request_body_schemas(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                if media_type == "multipart/form-data":
                    form_fields(doc, media["schema"])
                yield media["schema"]


def form_fields(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    """A form field is sent or left out, never null; an upload has at least one byte (an empty one is 422)."""
    name = schema.get("$ref", "").removeprefix(REF_PREFIX)
    target = doc["components"]["schemas"].get(name, schema)
    for prop in target.get("properties", {}).values():
        branches = [branch for branch in prop.pop("anyOf", []) if branch.get("type") != "null"]
        if len(branches) == 1:
            prop.update(branches[0])
        if prop.get("type") == "string" and "contentMediaType" in prop:
            prop["minLength"] = 1


def tighten(schema: dict[str, Any], limits: dict[str, dict[str, Any]], components: dict[str, Any],
            seen: set[str]) -> None:
    """Apply ``limits`` to the properties of ``schema`` and of every schema it refers to (each once)."""
    ref = schema.get("$ref")
    if ref is not None:
        name = ref.removeprefix(REF_PREFIX)
        if name not in seen and name in components:
            seen.add(name)
            tighten(components[name], limits, components, seen)
        return
    for name, prop in schema.get("properties", {}).items():
        if name in limits:
            lower(prop, limits[name])
    for value in schema.values():
        for child in value if isinstance(value, list) else value.values() if isinstance(value, dict) else ():
            if isinstance(child, dict):
                tighten(child, limits, components, seen)


def lower(prop: dict[str, Any], keywords: dict[str, Any]) -> None:
    """Set each keyword of ``keywords`` on ``prop`` (on each non-null branch of an ``anyOf``), never raising one."""
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") == "null":
            continue
        for keyword, value in keywords.items():
            if isinstance(value, dict):
                lower(branch.setdefault(keyword, {}), value)
            else:
                branch[keyword] = min(branch.get(keyword, value), value)


def document_errors(doc: dict[str, Any], app: FastAPI) -> None:
    """401/403 on the operations whose route needs a key (as service.auth decides), and ErrorResponse for 422."""
    for route in flat_routes(app.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        role = needed_role(route)
        statuses = {"read": ["401"], "admin": ["401", "403"]}.get(role or "", [])
        for method in route.methods - {"HEAD"}:
            responses = doc["paths"][route.path_format][method.lower()]["responses"]
            for status in statuses:
                responses.setdefault(status, {"description": AUTH_RESPONSES[status], "content": ERROR_CONTENT})
            if "422" in responses:
                responses["422"]["content"] = ERROR_CONTENT
