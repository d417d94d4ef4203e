"""A text query longer than the encoder's window is embedded with the collection's bundle policy, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from arcsearch.index.collections import embedder_dir, index_collection
from arcsearch.index.embedder import load_embedder
from tests import bundles
from tests.service.helpers import live_server

WINDOW = 32  # tokens per pass: the glosses below run to several windows


def documents(per_doc: int = 10) -> list[dict[str, Any]]:
    """One long text per lexicographer file of 6: ``per_doc`` real glosses of the class, joined."""
    rows = [json.loads(line) for line in bundles.prepared().lexfiles_file.read_text(encoding="utf-8").splitlines()]
    labels = ["noun.animal", "noun.food", "noun.plant", "verb.motion", "verb.weather", "adj.pert"]
    return [{"id": label, "label": label, "text": " ".join([r["text"] for r in rows if r["label"] == label][:per_doc])}
            for label in labels]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A live server with collection ``long``: the MiniLM bundle chunking at 32 tokens, 6 long documents."""
    root = tmp_path_factory.mktemp("long-texts")
    bundle = bundles.with_text_policy(bundles.text_embedder(root / "bundles"), root / "chunked",
                                      max_seq_length=WINDOW, long_texts="chunk")
    source = bundles.write_jsonl(root / "data" / "docs.jsonl", documents())
    index_collection(root / "collections", "long", bundle, source, device="cpu", batch_size=8)
    with live_server(root / "collections", root / "data", root / "server.log") as (url, _):
        yield {"url": url, "collections": root / "collections", "bundle": bundle}


def test_a_long_query_is_embedded_from_all_its_chunks(served: dict[str, Any]) -> None:
    docs = documents()
    query = docs[0]["text"] + " " + docs[1]["text"]  # about 10 windows: half animals, half food
    response = httpx.post(f"{served['url']}/v1/collections/long/search", json={"text": query, "k": 6}, timeout=120)
    assert response.status_code == 200, response.text
    scores = {hit["id"]: hit["score"] for hit in response.json()["queries"][0]["hits"]}

    chunked = load_embedder(embedder_dir(served["collections"], "long"), device="cpu")
    assert chunked.manifest.text is not None and chunked.manifest.text.long_texts == "chunk"
    vectors = chunked.embed_texts([doc["text"] for doc in docs])
    expected = dict(zip([doc["id"] for doc in docs], (vectors @ chunked.embed_texts([query])[0]).tolist(),
                        strict=True))
    assert scores == pytest.approx(expected, abs=1e-4)
    assert set(sorted(scores, key=scores.get)[-2:]) == {"noun.animal", "noun.food"}  # the tail counts

    first_window_only = chunked.model.encode([query], normalize_embeddings=True)[0]  # what truncation would give
    assert np.abs(vectors @ first_window_only - np.array([expected[d["id"]] for d in docs])).max() > 1e-2
