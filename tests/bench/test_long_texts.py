"""The long-texts bench: documents of one class's glosses each, and its table."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.long_texts import long_documents, markdown


def test_documents_join_distinct_glosses_of_their_own_class(tmp_path: Path) -> None:
    rows = [{"id": f"{label}{i}", "text": f"{label} gloss {i}", "label": label}
            for label, count in (("a", 10), ("b", 7), ("c", 3)) for i in range(count)]
    path = tmp_path / "lex.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    texts, labels = long_documents(path, glosses=3, per_class=2)
    assert labels == ["a", "a", "b", "b"]  # c has fewer than 3 x 2 glosses
    for text, label in zip(texts, labels, strict=True):
        assert re.fullmatch(rf"{label} gloss \d+( {label} gloss \d+){{2}}", text), text
    assert len(set(re.findall(r"\d+", " ".join(texts[:2])))) == 6  # no gloss in two documents


def test_the_table_has_a_row_per_setting_with_the_throughput_ratio() -> None:
    row = {"glosses": 8, "documents": 90, "classes": 45, "median_tokens": 86, "window": 64,
           "longer_than_window": 0.77, "truncate": {"map_at_r": 0.456, "docs_per_s": 9.2},
           "chunk": {"map_at_r": 0.6, "docs_per_s": 4.6}}
    lines = markdown([row, {**row, "window": 128}]).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| 8 | 90 (45) | 86 | 64 | 77% | 0.456 | 0.600 |")
    assert lines[2].endswith("| 2.00x |")
