"""Milvus names and filter expressions for arcsearch collections (index.milvus_store uses them).

Names: an arcsearch collection ``name`` ([a-z0-9][a-z0-9_-]{0,63}) is the Milvus alias ``arcsearch_<escaped>``,
where escaping doubles ``_`` and writes ``-`` as ``_d`` (Milvus names allow letters, digits and ``_`` only), so
two arcsearch names never meet in Milvus; each built version is a Milvus collection ``<alias>_v<stamp>``, and
``_v`` never occurs at an escape position of an alias, so versions of one collection never look like another's.

Filters: the same matches as the FAISS store's (label equal; each metadata key present with an equal value;
excluded ids left out), as a Milvus boolean expression. Keys are restricted to ``[A-Za-z0-9_-]{1,64}`` (what the
service accepts) and values to str / bool / int / float; strings are written as JSON string literals, which
Milvus's expression grammar reads with the same escapes (quotes, backslashes and control characters included).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from arcsearch.index.faiss_index import IndexStoreError
from arcsearch.index.metadata import INT64_MAX, INT64_MIN

PREFIX = "arcsearch_"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FILTER_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class MilvusStoreError(IndexStoreError):
    """A Milvus collection cannot be built, opened or searched as asked (bad names, filters, shapes)."""


def alias_for(name: str) -> str:
    """The Milvus alias that always names the live version of arcsearch collection ``name``."""
    if not NAME_PATTERN.fullmatch(name):
        raise MilvusStoreError(f"collection name {name!r} must match {NAME_PATTERN.pattern}")
    return PREFIX + name.replace("_", "__").replace("-", "_d")


def new_version_name(alias: str) -> str:
    """A fresh Milvus collection name for a version of ``alias``; sorts by creation time."""
    return f"{alias}_v{time.time_ns()}_{secrets.token_hex(3)}"


def is_version_of(collection: str, alias: str) -> bool:
    """Whether Milvus collection ``collection`` is a version made by ``new_version_name(alias)``."""
    return re.fullmatch(re.escape(alias) + r"_v\d+_[0-9a-f]{6}", collection) is not None


def literal(value: Any, *, field: str) -> str:
    """``value`` as a Milvus expression literal; MilvusStoreError for values a filter cannot hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise MilvusStoreError(f"{field}: integer beyond 64 bits")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MilvusStoreError(f"{field}: {value} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise MilvusStoreError(f"{field}: a filter value is a string, boolean or number, not {type(value).__name__}")


def filter_expression(label: str | None, metadata: dict[str, Any] | None,
                      exclude: Sequence[str] = ()) -> str:
    """The Milvus expression for items with ``label``, every ``metadata`` value, and none of ``exclude``
    ("" when nothing is filtered)."""
    clauses = [] if label is None else [f"label == {literal(label, field='label')}"]
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not FILTER_KEY.fullmatch(key):
            raise MilvusStoreError(f"metadata filter key {key!r} must match {FILTER_KEY.pattern}")
        clauses.append(f'metadata["{key}"] == {literal(value, field=f"metadata.{key}")}')
    if exclude:
        ids = ", ".join(literal(item, field="exclude") for item in exclude)
        clauses.append(f"external_id not in [{ids}]")
    return " and ".join(f"({clause})" for clause in clauses)


def ids_expression(external_ids: Sequence[str]) -> str:
    """The Milvus expression for items with one of ``external_ids``."""
    return f"external_id in [{', '.join(literal(i, field='id') for i in external_ids)}]"
