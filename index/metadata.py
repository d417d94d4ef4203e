"""The one check of what an item may carry before it is stored: ids, labels, texts and metadata.

Metadata is kept as JSON in SQLite and returned in every search hit, so a value that UTF-8, strict JSON or
SQLite's JSON functions cannot hold would break every later search returning the item (and, with
``NaN``, every metadata-filtered search of the collection), across restarts. Refused here:

- lone surrogates (``"\\ud800"`` in a JSON string) in keys and values: not encodable as UTF-8;
- ``NaN`` / ``Infinity`` (Python's json module accepts them; strict JSON and SQLite do not);
- numbers outside ``[NUMBER_MIN, NUMBER_MAX]`` = the signed 64-bit range, integers and fractions alike
  (SQLite's JSON functions store integers as 64-bit, and JSON Schema, which states the same bounds for
  every request that carries metadata, has one kind of number: ``1e19`` and ``10000000000000000000`` are
  the same value to a client);
- nesting deeper than ``MAX_METADATA_DEPTH``, more than ``MAX_METADATA_KEYS`` keys in all, and more than
  ``MAX_METADATA_BYTES`` of serialized JSON.

Item ids must also be free of control characters (newlines would forge log lines and break paths).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_METADATA_DEPTH = 16  # the metadata object itself is level 1
MAX_METADATA_KEYS = 256  # keys of all objects in it, together
MAX_METADATA_BYTES = 64 * 1024  # serialized as compact UTF-8 JSON
MAX_ITEM_ID_CHARS = 512
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUMBER_MIN, NUMBER_MAX = INT64_MIN, INT64_MAX  # every number in metadata, whole or not
SURROGATE = re.compile("[\ud800-\udfff]")  # a str from JSON holds a surrogate only if it was lone
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class MetadataError(ValueError):
    """A value that must not be stored; the message names where it is (``metadata.tags[2]``)."""


def _error(field: str, problem: str) -> MetadataError:
    return MetadataError(f"{field[:200]}: {problem}" if field else problem)  # a key may be long


def check_text(value: str, *, field: str = "") -> str:
    """``value`` unchanged, or MetadataError (prefixed by ``field``) if it holds a lone surrogate."""
    found = SURROGATE.search(value)
    if found:
        raise _error(field, f"lone surrogate U+{ord(found.group()):04X} at character {found.start()} "
                            "(not valid Unicode)")
    return value


def check_item_id(value: str, *, field: str = "id") -> str:
    """``value`` unchanged, or MetadataError: empty, too long, control characters or lone surrogates."""
    if not value or len(value) > MAX_ITEM_ID_CHARS:
        raise _error(field, f"an item id has 1 to {MAX_ITEM_ID_CHARS} characters")
    found = CONTROL.search(value)
    if found:
        raise _error(field, f"control character U+{ord(found.group()):04X} at character {found.start()}")
    return check_text(value, field=field)


def check_number(value: Any, *, field: str = "") -> Any:
    """``value`` unchanged, or MetadataError if it is a number (not a bool) that is not finite or lies outside
    ``[NUMBER_MIN, NUMBER_MAX]`` (compared exactly: an int is never rounded to a float first)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _error(field, f"{value} is not a finite number (JSON has no NaN or Infinity)")
    if isinstance(value, int | float) and not isinstance(value, bool) and not NUMBER_MIN <= value <= NUMBER_MAX:
        raise _error(field, "a number outside the signed 64-bit range [-2**63, 2**63 - 1]")
    return value


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, str):
        check_text(value, field=path)
    elif isinstance(value, int | float):
        check_number(value, field=path)
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise MetadataError(f"{path}: {type(value).__name__} is not a JSON value")


def check_metadata(metadata: Any, *, field: str = "metadata", max_depth: int = MAX_METADATA_DEPTH,
                   max_keys: int = MAX_METADATA_KEYS, max_bytes: int = MAX_METADATA_BYTES) -> dict[str, Any]:
    """``metadata`` unchanged if it is a JSON object that may be stored; else MetadataError naming the place.

    Walks the value without recursion (any depth is safe to check), then measures its compact JSON.
    """
    if not isinstance(metadata, dict):
        raise MetadataError(f"{field}: must be a JSON object, not {type(metadata).__name__}")
    keys = 0
    stack: list[tuple[Any, str, int]] = [(metadata, field, 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list) and depth > max_depth:
            raise MetadataError(f"{path}: nested deeper than {max_depth} levels")
        if isinstance(value, dict):
            keys += len(value)
            if keys > max_keys:
                raise MetadataError(f"{field}: more than {max_keys} keys")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise MetadataError(f"{path}: key {key!r} is not a string")
                stack.append((item, f"{path}.{check_text(key, field=f'{path} key')}", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        else:
            _check_scalar(value, path)
    size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode())
    if size > max_bytes:
        raise MetadataError(f"{field}: {size} bytes of JSON exceeds the limit of {max_bytes}")
    return metadata
