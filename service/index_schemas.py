"""Models of a chosen index: the budget a request may give (collection creation, re-index) and the facts a
collection summary shows (search parameters, measured recall and latency, memory-mapped or not)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from arcsearch.index.chooser import IndexBudget, parse_memory

# at least one byte: a number from 1 up (bytes, or with a unit index.chooser.MEMORY_UNITS knows, any case)
MEMORY_SIZE_PATTERN = r"^\s*0*[1-9][0-9]*(\.[0-9]+)?\s*(([kKmMgGtT][iI]?)?[bB])?\s*$"
MemorySize = (Annotated[str, StringConstraints(max_length=32, pattern=MEMORY_SIZE_PATTERN)]
              | Annotated[int, Field(ge=1)])


class IndexBudgetFields(BaseModel):
    """``target_recall`` / ``max_memory``: choose and tune the index by budget (an ``index_factory`` wins)."""

    target_recall: float | None = Field(None, gt=0.0, le=1.0, description=(
        "choose the index (Flat, HNSW, IVF-Flat, IVF-SQ8, IVF-PQ) and tune nprobe / efSearch until recall@10 "
        "against exact search on held-out corpus vectors reaches this; default 0.95 when max_memory is given"))
    max_memory: MemorySize | None = Field(None, description="bound on the chosen index's size: bytes, or a "
                                                            "size such as '2GiB' or '512MB'")

    @field_validator("max_memory")
    @classmethod
    def _a_memory_size(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_memory(value)  # IndexBudgetError is a ValueError: a 422 naming the field
        return value

    def index_budget(self) -> IndexBudget | None:
        """The budget asked for, or None if neither field is given."""
        if self.target_recall is None and self.max_memory is None:
            return None
        return IndexBudget(target_recall=0.95 if self.target_recall is None else self.target_recall,
                           max_memory_bytes=None if self.max_memory is None else parse_memory(self.max_memory))


class IndexFacts(BaseModel):
    """How the live index searches and, when it was chosen by budget, what it measured."""

    search_params: str = Field("", description="FAISS search parameters it was saved with, e.g. 'nprobe=16'")
    memory_mapped: bool = Field(False, description="read from its file on demand (large indexes)")
    target_recall: float | None = None
    max_memory_bytes: int | None = None
    recall_at_10: float | None = Field(None, description="measured on held-out corpus vectors against exact search")
    query_ms_p50: float | None = Field(None, description="median single-query search time when it was built, ms")
    estimated_bytes: int | None = None
