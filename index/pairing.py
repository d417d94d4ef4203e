"""The pairing rule: an index is searched only with the embedder its vectors were made with (weights hash,
modality and dimension)."""

from __future__ import annotations

from arcsearch.index.bundle import EmbedderManifest, IndexManifest
from arcsearch.index.faiss_index import IndexStoreError


class EmbedderMismatchError(IndexStoreError):
    """An index is paired with an embedder other than the one its vectors were made with."""


def check_embedder_pairing(index: IndexManifest, embedder: EmbedderManifest, *, where: str = "index") -> None:
    """Raise EmbedderMismatchError unless ``index`` was built with exactly this embedder (weights hash)."""
    if index.embedder_sha256 != embedder.weights_sha256:
        raise EmbedderMismatchError(
            f"{where} was built with embedder {index.embedder_sha256[:12]}, but the embedder here is "
            f"{embedder.weights_sha256[:12]}; re-index with this embedder or use the one it was built with")
    if index.modality != embedder.modality or index.embedding_dim != embedder.embedding_dim:
        raise EmbedderMismatchError(f"{where} holds {index.modality} vectors of dimension {index.embedding_dim}; "
                                    f"the embedder makes {embedder.modality} vectors of {embedder.embedding_dim}")
