"""Building one version of a Milvus-stored collection: its schema, rows in bounded insert batches, its index
(index.milvus_store serves it). The collection's description holds ``MilvusCollectionInfo`` as JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel

from arcsearch.index.bundle import Modality
from arcsearch.index.faiss_index import normalise
from arcsearch.index.items import ItemRecord, check_unique_ids
from arcsearch.index.milvus_names import MilvusStoreError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

logger = logging.getLogger(__name__)

FORMAT = "arcsearch.milvus/1"
MAX_ID_BYTES = 2048  # 512 characters (index.metadata.MAX_ITEM_ID_CHARS) of up to 4 UTF-8 bytes
MAX_TEXT_BYTES = 65535  # Milvus's largest VARCHAR
MAX_INSERT_BYTES = 16 * 1024 * 1024  # per insert call, well under gRPC's 64 MiB message limit
IndexType = Literal["FLAT", "HNSW"]
BUILD_PARAMS: dict[str, dict[str, int]] = {"FLAT": {}, "HNSW": {"M": 16, "efConstruction": 200}}


class MilvusCollectionInfo(BaseModel):
    """What a Milvus collection says about itself (its description, as JSON)."""

    format: Literal["arcsearch.milvus/1"] = FORMAT
    modality: Modality
    embedding_dim: int
    embedder_sha256: str
    index_type: IndexType = "FLAT"
    source: str = ""


def _schema(info: MilvusCollectionInfo) -> Any:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                        description=info.model_dump_json())
    schema.add_field("external_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
    schema.add_field("label", DataType.VARCHAR, max_length=MAX_ID_BYTES)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=info.embedding_dim)
    return schema


def row_of(record: ItemRecord, unit: np.ndarray) -> dict[str, Any]:
    return {"external_id": record.external_id, "label": record.label, "source": record.source,
            "metadata": record.metadata, "vector": unit.tolist()}


def _batches(rows: Iterator[dict[str, Any]], *, max_bytes: int = MAX_INSERT_BYTES) -> Iterator[list[dict[str, Any]]]:
    """Rows grouped so that each insert call stays under ``max_bytes`` (roughly: vectors plus JSON)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        row_bytes = 4 * len(row["vector"]) + len(json.dumps(row["metadata"])) + len(row["source"]) + 64
        if batch and size + row_bytes > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_bytes
    if batch:
        yield batch


def build_version(client: MilvusClient, collection: str, vectors: np.ndarray, records: Sequence[ItemRecord],
                  info: MilvusCollectionInfo, *, build_params: dict[str, int] | None = None) -> None:
    """Create Milvus collection ``collection`` holding the (n, d) vectors (normalised here) and their n records,
    indexed (``build_params``, default BUILD_PARAMS of the index type) and loaded; dropped again if anything fails."""
    if len(vectors) != len(records):
        raise MilvusStoreError(f"{len(vectors)} vectors but {len(records)} records")
    unit = normalise(vectors)
    if unit.shape[1] != info.embedding_dim:
        raise MilvusStoreError(f"vectors have dimension {unit.shape[1]}, the collection {info.embedding_dim}")
    check_unique_ids(records)
    client.create_collection(collection, schema=_schema(info), consistency_level="Strong")
    try:
        for batch in _batches(row_of(record, row) for record, row in zip(records, unit, strict=True)):
            client.insert(collection, batch)
        client.flush(collection)
        index_params = client.prepare_index_params()
        index_params.add_index("vector", index_type=info.index_type, metric_type="IP",
                               params=BUILD_PARAMS[info.index_type] if build_params is None else build_params)
        client.create_index(collection, index_params)
        client.load_collection(collection)
    except BaseException:
        client.drop_collection(collection)
        raise
    logger.info("built Milvus collection %s: %d items, %s", collection, len(records), info.index_type)
