"""One error shape for every error the service returns::

    {"error": {"code": "collection_not_found", "message": "no collection 'x'", "details": null}}

``ApiError`` subclasses carry a status code and a stable ``code``; handlers turn HTTPException,
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

from arcsearch.index.durable import DurableWriteError, StorageFullError
from arcsearch.index.durable import StorageBusyError as IndexStorageBusyError
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


class CollectionNotFoundError(ApiError):
    status, code = 404, "collection_not_found"


class JobNotFoundError(ApiError):
    status, code = 404, "job_not_found"


class ItemNotFoundError(ApiError):
    status, code = 404, "item_not_found"


class CollectionEmptyError(ApiError):
    status, code = 409, "collection_empty"


class WrongModalityError(ApiError):
    status, code = 400, "wrong_modality"


class WrongDimensionError(ApiError):
    """A vector whose length is not the collection's dimension (a fact of the collection, not of the schema)."""

    status, code = 400, "wrong_dimension"


class InvalidSourceError(ApiError):
    status, code = 400, "invalid_source"


class SourceOutsideDataRootError(ApiError):
    status, code = 403, "source_outside_data_root"


class JobConflictError(ApiError):
    status, code = 409, "job_conflict"


class JobFinishedError(ApiError):
    """A cancel arrived for a job that has already finished (succeeded, failed, interrupted or cancelled)."""

    status, code = 409, "job_finished"


class CollectionExistsError(ApiError):
    status, code = 409, "collection_exists"


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


class NotReadyError(ApiError):
    status, code = 503, "not_ready"


class CollectionUnavailableError(ApiError):
    status, code = 503, "collection_unavailable"


class JsonTooDeepError(ApiError):
    """A JSON body nested deeper than the service parses (checked before it is parsed)."""

    status, code = 422, "json_too_deep"


class UntrustedHostError(ApiError):
    """With no API key configured, a Host header that is not a loopback name (DNS rebinding)."""

    status, code = 421, "untrusted_host"


class NonLoopbackClientError(ApiError):
    """With no API key configured and non-loopback clients not allowed, a request from another machine."""

    status, code = 403, "non_loopback_client"


class RetryLaterError(ApiError):
    """A 503 the client may retry: ``Retry-After`` (whole seconds) says when."""

    status, code = 503, "service_unavailable"

    def __init__(self, message: str, *, details: Any = None, retry_after_s: int = 1) -> None:
        super().__init__(message, details=details)
        self.headers = {"Retry-After": str(retry_after_s)}


class OverloadedError(RetryLaterError):
    """The service sheds this request instead of queueing it."""

    status, code = 503, "overloaded"


class StorageBusyError(RetryLaterError):
    """A durable write met another connection's (or process's) lock; nothing changed; retry after a moment."""

    status, code = 503, "storage_busy"


def error_payload(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error body: ``{"error": {"code", "message", "details"}}``."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_payload(code, message, details), status_code=status, headers=headers)


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


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


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


def validation_error(loc: tuple[str | int, ...], message: str, *, error_type: str = "value_error") -> \
        RequestValidationError:
    """A RequestValidationError for limits checked in handlers (settings-dependent), rendered as 422."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": error_type}])


class InsufficientStorageError(ApiError):
    """A durable write found the disk full; nothing changed."""

    status, code = 507, "insufficient_storage"


class StorageUnavailableError(ApiError):
    """A durable write failed for another reason (an I/O error, a damaged file); nothing changed."""

    status, code = 503, "storage_unavailable"


class JobsUnavailableError(ApiError):
    """The jobs database cannot be opened or read (e.g. a damaged file); searches go on without it."""

    status, code = 503, "jobs_unavailable"


def storage_error(exc: DurableWriteError, *, retry_after_s: float,
                  other: type[ApiError] = StorageUnavailableError) -> ApiError:
    """The API error for a failed durable write: busy -> 503 with Retry-After, full -> 507, else ``other``."""
    if isinstance(exc, IndexStorageBusyError):
        return StorageBusyError(str(exc), retry_after_s=max(1, math.ceil(retry_after_s)))
    if isinstance(exc, StorageFullError):
        return InsufficientStorageError(str(exc))
    return other(str(exc))
