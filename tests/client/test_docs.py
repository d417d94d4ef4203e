"""docs/client.md is true: its Python blocks run, in order, against the live server of these tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from arcsearch.client import Client
from tests.client.helpers import ADMIN_KEY, Live

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
DOC_URL, DOC_KEY = "http://127.0.0.1:8000", "ADMIN-KEY"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_every_python_block_of_the_client_docs_runs(live: Live, client: Client, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").symlink_to(live.data_root)  # the docs' paths: data/faces/..., relative to the cwd
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 10
    namespace: dict[str, Any] = {}
    for number, block in enumerate(blocks, 1):
        code = block.replace(DOC_URL, live.url).replace(DOC_KEY, ADMIN_KEY)
        exec(compile(code, f"docs/client.md, python block {number}", "exec"), namespace)  # noqa: S102
    assert namespace["job"].status == "succeeded" and namespace["job"].num_items == 2
    assert len(namespace["queries"]) == 2 and len(namespace["similar"]) == 5
    assert namespace["item"].metadata == {"lang": "en", "text": "a small dog"}
    assert "my-texts" not in {summary.name for summary in client.collections()}  # the last block deleted it
