"""The domain's exceptions: what went wrong, in words and plain data; no HTTP status.

Every one is a ``DomainError`` with a ``message`` for the client and JSON-safe ``details`` (or None). The
edge (``arcsearch.service.errors``) maps each class to its status code and stable error ``code``.
"""

from __future__ import annotations

from typing import Any

from arcsearch.index.durable import DurableWriteError, StorageFullError
from arcsearch.index.durable import StorageBusyError as IndexStorageBusyError


class DomainError(Exception):
    """A refusal or failure of the domain that a client is told about: ``message`` and optional ``details``."""

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotReadyError(DomainError):
    """The service is still loading its collections, or is shutting down."""


class CollectionNotFoundError(DomainError):
    """No collection of that name (or no collection of the asked modality)."""


class CollectionUnavailableError(DomainError):
    """The collection exists on disk but could not be loaded."""


class CollectionExistsError(DomainError):
    """A collection of that name exists already."""


class CollectionEmptyError(DomainError):
    """The collection has no published index version yet."""


class WrongModalityError(DomainError):
    """Images given to a text collection, or texts to an image collection."""


class ItemNotFoundError(DomainError):
    """No item of that external id in the collection."""


class JobNotFoundError(DomainError):
    """No re-index job of that id (or it was forgotten)."""


class JobConflictError(DomainError):
    """A re-index job already runs on the collection."""


class JobFinishedError(DomainError):
    """A cancel arrived for a job that has already finished (succeeded, failed, interrupted or cancelled)."""


class InvalidSourceError(DomainError):
    """A source path that is a URL, has a NUL byte, does not exist, or is not what the collection reads."""


class SourceOutsideDataRootError(DomainError):
    """A source path that is absolute, has ``..`` parts, or leads outside the data root."""


class RetryLaterError(DomainError):
    """A refusal the client may retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, details: Any = None, retry_after_s: float = 1.0) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class OverloadedError(RetryLaterError):
    """The service sheds this query instead of queueing it (a full queue, or no answer in time)."""


class StorageBusyError(RetryLaterError):
    """A durable write met another connection's (or process's) lock; nothing changed."""


class InsufficientStorageError(DomainError):
    """A durable write found the disk full; nothing changed."""


class StorageUnavailableError(DomainError):
    """A durable write failed for another reason (an I/O error, a damaged file); nothing changed."""


class BackendUnavailableError(DomainError):
    """A collection's vector store cannot be reached or is not configured (no ARCSEARCH_MILVUS_URI)."""


class BackendRefusedError(DomainError):
    """This process does not serve collections of that backend (FAISS in a process that shares its folder)."""


class JobsUnavailableError(DomainError):
    """The jobs database cannot be opened or read (e.g. a damaged file); searches go on without it."""


def storage_error(exc: DurableWriteError, *, retry_after_s: float,
                  other: type[DomainError] = StorageUnavailableError) -> DomainError:
    """The domain error for a failed durable write: busy -> StorageBusyError (retry after ``retry_after_s``),
    full -> InsufficientStorageError, else ``other``."""
    if isinstance(exc, IndexStorageBusyError):
        return StorageBusyError(str(exc), retry_after_s=retry_after_s)
    if isinstance(exc, StorageFullError):
        return InsufficientStorageError(str(exc))
    return other(str(exc))
