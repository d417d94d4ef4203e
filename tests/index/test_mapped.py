"""Large indexes are read memory-mapped; the first upsert or delete swaps in an in-memory copy (FAISS aborts the
process on a write to a mapped index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arcsearch.index.items import ItemRecord
from arcsearch.index.store import IndexStore


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF16,Flat", "IVF16,SQ8"])
def test_a_mapped_index_searches_like_a_loaded_one_and_takes_changes(tmp_path: Path, factory: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((1_000, 16)).astype(np.float32)
    records = [ItemRecord(f"v{i}") for i in range(len(vectors))]
    IndexStore.build(vectors, records, modality="text", embedder_sha256="e" * 64, factory=factory).save(tmp_path / "b")
    loaded = IndexStore.load(tmp_path / "b", search_params="" if factory.startswith("Flat") or "HNSW" in factory
                             else "nprobe=16", mmap_min_bytes=None)
    mapped = IndexStore.load(tmp_path / "b", search_params=loaded.search_params, mmap_min_bytes=0)
    assert loaded.mapped_file is None and mapped.mapped_file == tmp_path / "b" / "index.faiss"
    queries = vectors[:20]
    assert [[h.external_id for h in row] for row in mapped.search(queries, 5)] == \
           [[h.external_id for h in row] for row in loaded.search(queries, 5)]

    mapped.enable_mutations()
    assert mapped.mapped_file is not None  # still mapped until something is written
    mapped.upsert(ItemRecord("new"), vectors[0] + 0.01)
    assert mapped.mapped_file is None
    assert mapped.delete("v1") and mapped.get("v1") is None
    assert mapped.search(vectors[:1], 1)[0][0].external_id in {"v0", "new"} and len(mapped) == 1_000
