"""The service's one Milvus client, made on first use from the settings (``ARCSEARCH_MILVUS_URI`` and
``ARCSEARCH_MILVUS_TOKEN``; never from a request: a URL a user passes must not make the server connect anywhere)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from arcsearch.service.core.config import RegistrySettings
from arcsearch.service.core.errors import BackendUnavailableError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

logger = logging.getLogger(__name__)


class MilvusLink:
    """Connects to Milvus when a Milvus collection is first created or loaded; shared by all of them."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self._client: MilvusClient | None = None
        self._lock = threading.Lock()

    def client(self) -> MilvusClient:
        """The client; BackendUnavailableError if no URI is set, pymilvus is missing or Milvus cannot be reached."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> MilvusClient:
        uri = self.settings.milvus_uri
        if not uri:
            raise BackendUnavailableError("this collection is stored in Milvus and ARCSEARCH_MILVUS_URI is not set; "
                                          "set it to the Milvus server's URI (docs/service.md, Running on Milvus)")
        try:
            from arcsearch.index.milvus_store import connect

            client = connect(uri, token=self.settings.milvus_token.get_secret_value())
        except ImportError as exc:
            raise BackendUnavailableError(f"Milvus collections need pymilvus: pip install 'arcsearch[milvus]' ({exc})"
                                          ) from None
        except Exception as exc:  # pymilvus raises MilvusException and grpc errors for a server it cannot reach
            raise BackendUnavailableError(f"cannot reach Milvus at ARCSEARCH_MILVUS_URI: {type(exc).__name__}: {exc}"
                                          ) from None
        logger.info("connected to Milvus at %s", uri)
        return client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
