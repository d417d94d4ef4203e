"""The client's exceptions: one hierarchy under ``ArcsearchError``.

::

    ArcsearchError                 .code .message .status .details .request_id
    ├── ApiError                   the server answered with an error status (its JSON error body)
    │   ├── ClientError            4xx: BadRequest 400, Unauthorized 401, Forbidden 403, NotFound 404,
    │   │                          Conflict 409, PayloadTooLarge 413, UnsupportedMediaType 415,
    │   │                          ValidationError 422, TooManyRequests 429 (.retry_after_s)
    │   └── ServerError            5xx: Overloaded 503 (.retry_after_s)
    ├── TransportError             no answer (connection refused or reset, ...); the httpx error is __cause__
    │   └── RequestTimeout         no answer in time (also a TimeoutError)
    ├── InvalidResponse            a success status with a body that is not the expected JSON
    └── JobError                   .job: wait_for_job's last JobStatus
        ├── JobFailed              the job ended failed or interrupted
        └── JobTimeout             the job had not finished in time (also a TimeoutError)

``code`` is the server's stable error code (``collection_not_found``, ``validation_error``, ...) for
an ``ApiError``, whatever the code: a code this client does not know still lands in the class of its
status. Other errors have client-side codes (``transport_error``, ``timeout``, ``invalid_response``,
``job_failed``, ``job_timeout``).
"""

from __future__ import annotations

import email.utils
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from arcsearch.service.schemas import JobStatus

REQUEST_ID_HEADER = "X-Request-ID"
MAX_MESSAGE_CHARS = 500


class ArcsearchError(Exception):
    """Any error of the arcsearch client; ``status`` is the HTTP status, None where no response came."""

    def __init__(self, message: str, *, code: str, status: int | None = None, details: Any = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details
        self.request_id = request_id

    def __str__(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        request = f" (request id {self.request_id})" if self.request_id else ""
        return f"{status}{self.code}: {self.message}{request}"


class ApiError(ArcsearchError):
    """The server answered with an error status; ``retry_after_s`` from its Retry-After header, if any."""

    status: int

    def __init__(self, message: str, *, code: str, status: int, details: Any = None,
                 request_id: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, code=code, status=status, details=details, request_id=request_id)
        self.retry_after_s = retry_after_s


class ClientError(ApiError):
    """4xx: the request was refused; sending it again unchanged will fail again (except 429)."""


class BadRequest(ClientError):
    """400, e.g. ``wrong_modality``, ``invalid_source``, ``invalid_embedder``."""


class Unauthorized(ClientError):
    """401: no API key, or one the server does not know."""


class Forbidden(ClientError):
    """403: the key may not do this (a read-only key on an admin route), or a path outside the data root."""


class NotFound(ClientError):
    """404, e.g. ``collection_not_found``, ``item_not_found``, ``job_not_found``."""


class Conflict(ClientError):
    """409, e.g. ``collection_exists``, ``job_conflict``, ``job_finished``, ``collection_empty``."""


class PayloadTooLarge(ClientError):
    """413: a file or the request body exceeds the server's limit (``details.limit_bytes``)."""


class UnsupportedMediaType(ClientError):
    """415: an image the server cannot decode."""


class ValidationError(ClientError):
    """422: the request does not fit the schema or a limit; ``details`` lists ``{"loc", "msg", "type"}``."""


class TooManyRequests(ClientError):
    """429: too many requests now; retry after ``retry_after_s`` (if the server gave it)."""


class ServerError(ApiError):
    """5xx: the server failed; the request may succeed later."""


class Overloaded(ServerError):
    """503: the server cannot take the request now (overloaded, still loading, shutting down)."""


class TransportError(ArcsearchError):
    """No HTTP answer: the connection failed or broke; the httpx exception is ``__cause__``."""


class RequestTimeout(TransportError, TimeoutError):
    """No HTTP answer within the client's timeout."""


class InvalidResponse(ArcsearchError):
    """A success status whose body is not the JSON this client expects (a proxy's page, another server)."""


class JobError(ArcsearchError):
    """A re-index job did not succeed in ``wait_for_job``; ``job`` is its last state."""

    def __init__(self, message: str, *, code: str, job: JobStatus) -> None:
        super().__init__(message, code=code)
        self.job = job


class JobFailed(JobError):
    """The job ended ``failed``, ``interrupted`` or ``cancelled``; ``job.error`` and ``job.failures`` say why."""


class JobTimeout(JobError, TimeoutError):
    """The job was still queued or running when ``wait_for_job``'s timeout passed (it goes on)."""


ERROR_CLASSES: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
    415: UnsupportedMediaType, 422: ValidationError, 429: TooManyRequests, 503: Overloaded}


def retry_after_s(headers: httpx.Headers, *, now_s: float | None = None) -> float | None:
    """Seconds the Retry-After header asks to wait (delta-seconds or an HTTP date); None if absent/unreadable."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now_s is None else now_s))


def _error_body(response: httpx.Response) -> tuple[str, str, Any]:
    """(code, message, details) from the server's ``{"error": {...}}`` body, or from the status for another body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        error = None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"], str(error.get("message") or response.reason_phrase), error.get("details")
    text = response.text.strip()[:MAX_MESSAGE_CHARS]
    return "http_error", text or response.reason_phrase or f"HTTP {response.status_code}", None


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for an error response (status >= 400), of the class its status maps to."""
    code, message, details = _error_body(response)
    status = response.status_code
    fallback = ServerError if status >= 500 else ClientError
    cls = ERROR_CLASSES.get(status, fallback)
    return cls(message, code=code, status=status, details=details,
               request_id=response.headers.get(REQUEST_ID_HEADER), retry_after_s=retry_after_s(response.headers))


def transport_error(exc: httpx.TransportError) -> TransportError:
    """The client's exception for an httpx transport error (raise it ``from exc``)."""
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(f"no answer in time: {exc!r}", code="timeout")
    return TransportError(f"no answer from the server: {exc!r}", code="transport_error")
