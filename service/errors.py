"""One error shape for every error the service returns::

    {"error": {"code": "collection_not_found", "message": "no collection 'x'", "details": null}}

``ApiError`` subclasses (refusals of the edge: keys, limits, uploads) carry a status code and a stable ``code``;
the domain's exceptions (``arcsearch.service.core.errors``) carry none, and ``DOMAIN_ERRORS`` gives each its
status and ``code`` (a ``RetryLaterError`` also gets ``Retry-After``). Handlers turn those, HTTPException,
RequestValidationError (-> 422) and any unexpected exception (-> 500, logged) into the same shape.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from arcsearch.service.core.errors import (
    BackendRefusedError,
    BackendUnavailableError,
    CollectionEmptyError,
    CollectionExistsError,
    CollectionNotFoundError,
    CollectionUnavailableError,
    DomainError,
    InsufficientStorageError,
    InvalidSourceError,
    ItemNotFoundError,
    JobConflictError,
    JobFinishedError,
    JobNotFoundError,
    JobsUnavailableError,
    NotReadyError,
    OverloadedError,
    RetryLaterError,
    SourceOutsideDataRootError,
    StorageBusyError,
    StorageUnavailableError,
    WrongModalityError,
)
from arcsearch.service.routetable import allowed_methods

logger = logging.getLogger(__name__)

STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
                500: "internal_error", 503: "service_unavailable"}


class ApiError(StarletteHTTPException):
    """An error with a status, a stable machine-readable ``code`` and a human ``message``."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(status_code=self.status, detail=message)
        self.message = message
        self.details = details


class UnauthorizedError(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, details=details)
        self.headers = headers


class ForbiddenError(ApiError):
    status, code = 403, "forbidden"


class WrongDimensionError(ApiError):
    """A vector whose length is not the collection's dimension (a fact of the collection, not of the schema)."""

    status, code = 400, "wrong_dimension"


class InvalidEmbedderError(ApiError):
    status, code = 400, "invalid_embedder"


class InvalidIndexFactoryError(ApiError):
    status, code = 422, "invalid_index_factory"


class PayloadTooLargeError(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaError(ApiError):
    status, code = 415, "unsupported_media_type"


class EmptyUploadError(ApiError):
    status, code = 422, "empty_upload"


class JsonTooDeepError(ApiError):
    """A JSON body nested deeper than the service parses (checked before it is parsed)."""

    status, code = 422, "json_too_deep"


class UntrustedHostError(ApiError):
    """With no API key configured, a Host header that is not a loopback name (DNS rebinding)."""

    status, code = 421, "untrusted_host"


class NonLoopbackClientError(ApiError):
    """With no API key configured and non-loopback clients not allowed, a request from another machine."""

    status, code = 403, "non_loopback_client"


# Each domain exception's status and error code: clients rely on both, so they never change.
DOMAIN_ERRORS: dict[type[DomainError], tuple[int, str]] = {
    NotReadyError: (503, "not_ready"),
    BackendUnavailableError: (503, "backend_unavailable"),
    BackendRefusedError: (409, "backend_refused"),
    CollectionNotFoundError: (404, "collection_not_found"),
    CollectionUnavailableError: (503, "collection_unavailable"),
    CollectionExistsError: (409, "collection_exists"),
    CollectionEmptyError: (409, "collection_empty"),
    WrongModalityError: (400, "wrong_modality"),
    ItemNotFoundError: (404, "item_not_found"),
    JobNotFoundError: (404, "job_not_found"),
    JobConflictError: (409, "job_conflict"),
    JobFinishedError: (409, "job_finished"),
    InvalidSourceError: (400, "invalid_source"),
    SourceOutsideDataRootError: (403, "source_outside_data_root"),
    RetryLaterError: (503, "service_unavailable"),
    OverloadedError: (503, "overloaded"),
    StorageBusyError: (503, "storage_busy"),
    InsufficientStorageError: (507, "insufficient_storage"),
    StorageUnavailableError: (503, "storage_unavailable"),
    JobsUnavailableError: (503, "jobs_unavailable"),
}


def domain_status(exc: DomainError) -> tuple[int, str]:
    """The status and error code of ``exc``: its class's entry in DOMAIN_ERRORS, else its nearest base's."""
    for cls in type(exc).__mro__:
        if cls in DOMAIN_ERRORS:
            return DOMAIN_ERRORS[cls]
    return 500, "internal_error"


def retry_after_header(retry_after_s: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


def error_payload(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error body: ``{"error": {"code", "message", "details"}}``."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_payload(code, message, details), status_code=status, headers=headers)


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status, code = domain_status(exc)
    headers = retry_after_header(exc.retry_after_s) if isinstance(exc, RetryLaterError) else None
    return error_response(status, code, exc.message, exc.details, headers)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = STATUS_CODES.get(exc.status_code, "http_error")
    headers = exc.headers
    if exc.status_code == 405:  # RFC 9110: Allow lists every method of the resource, not one route's
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.scope))}
    return error_response(exc.status_code, code, str(exc.detail), None, headers)


def _location(loc: Any) -> str:
    return ".".join(str(part) for part in loc) if isinstance(loc, list | tuple) else str(loc)


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Pydantic errors reduced to JSON-safe ``{"loc", "msg", "type"}`` (inputs are not echoed back)."""
    return [{"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", "")),
             "type": str(error.get("type", ""))} for error in errors]


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    if any(d["type"] == "json_invalid" for d in details):
        return error_response(422, "invalid_json", "the request body is not valid JSON", details)
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    message = f"{_location(first['loc'])}: {first['msg']}" if first["loc"] else first["msg"]
    return error_response(422, "validation_error", message, details)


def _backend_error(request: Request, exc: Exception) -> JSONResponse:
    """A Milvus server that is down, overloaded or lost a collection: not a bug here, and a retry may help."""
    logger.error("Milvus failed on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return error_response(503, "backend_unavailable", f"the vector store failed: {type(exc).__name__}; retry "
                          "shortly", headers=retry_after_header(1.0))


def install_backend_error_handler(app: FastAPI) -> None:
    """Answer pymilvus's errors with 503 ``backend_unavailable`` (only for an app with a Milvus URI: importing
    pymilvus takes most of a second)."""
    try:
        from pymilvus.exceptions import MilvusException
    except ImportError:  # then no Milvus collection loads either (service.core.milvus_link says why)
        return
    app.add_exception_handler(MilvusException, _backend_error)


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


def validation_error(loc: tuple[str | int, ...], message: str, *, error_type: str = "value_error") -> \
        RequestValidationError:
    """A RequestValidationError for limits checked in handlers (settings-dependent), rendered as 422."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": error_type}])
