"""The edge answers each domain exception with the status and error code clients have always seen."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from arcsearch.service.core import errors as domain
from arcsearch.service.errors import DOMAIN_ERRORS, install_error_handlers

# The contract: clients (and arcsearch.client) rely on these pairs; a change here is a breaking change.
EXPECTED = {
    "NotReadyError": (503, "not_ready"), "CollectionNotFoundError": (404, "collection_not_found"),
    "BackendUnavailableError": (503, "backend_unavailable"), "BackendRefusedError": (409, "backend_refused"),
    "CollectionUnavailableError": (503, "collection_unavailable"), "CollectionExistsError": (409, "collection_exists"),
    "CollectionEmptyError": (409, "collection_empty"), "WrongModalityError": (400, "wrong_modality"),
    "ItemNotFoundError": (404, "item_not_found"), "JobNotFoundError": (404, "job_not_found"),
    "JobConflictError": (409, "job_conflict"), "JobFinishedError": (409, "job_finished"),
    "InvalidSourceError": (400, "invalid_source"), "SourceOutsideDataRootError": (403, "source_outside_data_root"),
    "RetryLaterError": (503, "service_unavailable"), "OverloadedError": (503, "overloaded"),
    "StorageBusyError": (503, "storage_busy"), "InsufficientStorageError": (507, "insufficient_storage"),
    "StorageUnavailableError": (503, "storage_unavailable"), "JobsUnavailableError": (503, "jobs_unavailable"),
}


def all_subclasses(cls: type) -> set[type]:
    direct = set(cls.__subclasses__())
    return direct.union(*(all_subclasses(sub) for sub in direct))


def test_every_domain_error_has_its_own_status_and_code() -> None:
    subclasses = all_subclasses(domain.DomainError)
    missing = sorted(cls.__name__ for cls in subclasses if cls not in DOMAIN_ERRORS)
    assert not missing, f"add these to arcsearch.service.errors.DOMAIN_ERRORS: {missing}"
    assert {cls.__name__: answer for cls, answer in DOMAIN_ERRORS.items()} == EXPECTED


def raising_app(exc: Exception) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


def test_a_domain_error_gets_the_one_error_shape() -> None:
    exc = domain.JobConflictError("a job runs", details={"job_id": "j1"})
    response = raising_app(exc).get("/boom")
    assert response.status_code == 409 and "retry-after" not in response.headers
    assert response.json() == {"error": {"code": "job_conflict", "message": "a job runs", "details": {"job_id": "j1"}}}


def test_a_retry_later_error_says_when_in_whole_seconds() -> None:
    response = raising_app(domain.StorageBusyError("locked", retry_after_s=2.2)).get("/boom")
    assert response.status_code == 503 and response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "storage_busy"
    response = raising_app(domain.OverloadedError("full", retry_after_s=0.1)).get("/boom")
    assert response.headers["retry-after"] == "1" and response.json()["error"]["code"] == "overloaded"
