"""What a search returns for one neighbour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arcsearch.index.items import ItemRecord


@dataclass(frozen=True)
class Hit:
    """One search result; ``score`` is the cosine similarity of query and item, in [-1, 1]."""

    external_id: str
    score: float
    label: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, record: ItemRecord, score: float) -> Hit:
        """The hit for a stored item at ``score``."""
        return cls(external_id=record.external_id, score=score, label=record.label, source=record.source,
                   metadata=record.metadata)
