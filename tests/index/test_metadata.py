"""index.metadata: what an item may carry before it is stored; index.corpus refuses rows that carry worse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arcsearch.index.corpus import CorpusError, read_text_file
from arcsearch.index.metadata import MetadataError, check_item_id, check_metadata, check_text


def nested(depth: int) -> Any:
    """An object ``depth`` levels deep."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("metadata", [{}, {"a": 1, "b": [1.5, "x", None, True, {"c": "\U0001f600"}]},
                                      nested(16), {f"k{i}": i for i in range(256)}, {"big": 2**63 - 1},
                                      {"least": -(2**63)}, {"f": [9.2e18, -9.2e18, 1e-300]},
                                      {"text": "y" * 60_000}])
def test_storable_metadata_passes_unchanged(metadata: dict[str, Any]) -> None:
    assert check_metadata(metadata) is metadata


@pytest.mark.parametrize(("metadata", "where"), [
    ({"x": "\ud800"}, "metadata.x"), ({"x": ["ok", {"y": "a\udfffb"}]}, "metadata.x[1].y"),
    ({"\udc00": 1}, "metadata key"), ({"x": float("nan")}, "metadata.x"), ({"x": [float("-inf")]}, "metadata.x[0]"),
    ({"x": 2**63}, "metadata.x"), ({"x": -(2**63) - 1}, "metadata.x"), ({"x": [1e19]}, "metadata.x[0]"),
    ({"x": -1e300}, "metadata.x"), ({"x": 10**400}, "metadata.x: a number outside"),
    (nested(17), "nested deeper than 16"), ({f"k{i}": i for i in range(257)}, "keys"),
    ({"text": "y" * 70_000}, "bytes"), ({"x": object()}, "not a JSON value"), ({1: "x"}, "not a string"),
    ([1, 2], "JSON object"),
])
def test_poison_metadata_is_refused_naming_the_place(metadata: Any, where: str) -> None:
    with pytest.raises(MetadataError, match=where.replace("[", r"\[").replace("]", r"\]")):
        check_metadata(metadata)


def test_depth_and_size_are_checked_without_recursion() -> None:
    value: Any = "deep"
    for _ in range(100_000):
        value = [value]
    with pytest.raises(MetadataError, match="deeper"):
        check_metadata({"x": value})


@pytest.mark.parametrize("item_id", ["a\nb", "a\rb", "tab\t", "nul\x00", "del\x7f", "c1\x85", "\ud800", "", "x" * 513])
def test_item_ids_without_controls_or_surrogates(item_id: str) -> None:
    with pytest.raises(MetadataError):
        check_item_id(item_id)
    assert check_item_id("s1/1.pgm ünïcödé 😀") == "s1/1.pgm ünïcödé 😀"


def test_text_check_names_its_field() -> None:
    with pytest.raises(MetadataError, match="^label: lone surrogate U\\+D800 at character 1"):
        check_text("a\ud800", field="label")


@pytest.mark.parametrize(("row", "reason"), [
    ('{"id": "n", "text": "a", "label": "x", "score": NaN}', "finite"),
    ('{"id": "n", "text": "a", "label": "x", "score": [Infinity]}', "finite"),
    (json.dumps({"id": "s", "text": "a", "label": "x", "note": "\ud800"}), "surrogate"),
    (json.dumps({"id": "s", "text": "a \udc00", "label": "x"}), "text: lone surrogate"),
    (json.dumps({"id": "s", "text": "a", "label": "\udc00"}), "label: lone surrogate"),
    (json.dumps({"id": "a\nb", "text": "a", "label": "x"}), "id: control character"),
    ("[1, 2]", "not a JSON object"),
    ("[" * 5000 + "]" * 5000, "not JSON"),
])
def test_a_corpus_row_that_must_not_be_stored_is_a_clear_error(tmp_path: Path, row: str, reason: str) -> None:
    path = tmp_path / "texts.jsonl"
    path.write_text('{"text": "fine", "label": "x"}\n' + row + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=reason) as raised:
        read_text_file(path)
    assert "line 2" in str(raised.value) or "row 2" in str(raised.value)
