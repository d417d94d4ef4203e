"""One search hit, as every search response shows it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SearchHit(BaseModel):
    id: str = Field(description="the item's external id")
    score: float = Field(description="cosine similarity of query and item, in [-1, 1]")
    label: str = ""
    source: str = Field("", description="where the item came from (image path in its corpus)")
    metadata: dict[str, Any] = Field(default_factory=dict, description="texts keep their text under 'text'")
