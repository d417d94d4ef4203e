"""A live uvicorn server with API keys for the client tests, over copies of the shared collections.

``service_data`` (tests/conftest.py) builds the collections once; this server gets its own
copy of them (tests/service/helpers.served_copy) and its own data root (the two embedder bundles, the texts corpus,
a corpus of bad rows, six faces), so the collections these tests create, fill and delete touch no
other test. ``client`` has the admin key; ``raw`` is a plain httpx client with it, for comparisons.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arcsearch.client import Client
from tests.client.helpers import ADMIN_KEY, IMAGE_EMBEDDER, READ_KEY, TEXT_EMBEDDER, TIMEOUT_S, Live
from tests.service.helpers import ServiceData, live_server, served_copy


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link a read-only tree (an embedder bundle); copy where links cannot be made."""
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


def _data_root(data: ServiceData, root: Path) -> Path:
    _link_tree(data.text_embedder, root / TEXT_EMBEDDER)
    _link_tree(data.image_embedder, root / IMAGE_EMBEDDER)
    shutil.copy(data.data_root / "texts.jsonl", root / "texts.jsonl")
    shutil.copy(data.data_root / "texts.jsonl", root / "wordnet_glosses.jsonl")  # the name docs/client.md uses
    (root / "bad.jsonl").write_text("not json\n[1, 2]\n", encoding="utf-8")
    for person in ("s1", "s2"):
        (root / "faces" / person).mkdir(parents=True)
        for n in (1, 2, 3):
            shutil.copy(data.faces_dir / person / f"{n}.pgm", root / "faces" / person / f"{n}.pgm")
    return root


@pytest.fixture(scope="session")
def live(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("client")
    collections = served_copy(service_data.collections_dir, root / "collections")
    data_root = _data_root(service_data, root / "data")
    with live_server(collections, data_root, root / "server.log", batch_size="8",
                     read_keys=READ_KEY, admin_keys=ADMIN_KEY) as (url, _):
        yield Live(url, data_root, service_data)


@pytest.fixture()
def client(live: Live) -> Iterator[Client]:
    with Client(live.url, api_key=ADMIN_KEY, timeout_s=TIMEOUT_S) as admin:
        yield admin


@pytest.fixture()
def raw(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                      timeout=TIMEOUT_S) as http:
        yield http


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"
