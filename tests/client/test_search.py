"""Searches through the client against the live server: the same hits as the raw HTTP call, typed."""

from __future__ import annotations

import numpy as np
import pytest
from httpx import Client as HttpClient
from PIL import Image

from arcsearch.client import Client, ImageQueryResults, QueryResults, SearchFilter, SearchHit
from tests.client.helpers import Live, face, query_texts


def ids_scores(hits: list[SearchHit]) -> list[tuple[str, float]]:
    return [(hit.id, round(hit.score, 5)) for hit in hits]


def raw_ids_scores(hits: list[dict]) -> list[tuple[str, float]]:
    return [(hit["id"], round(hit["score"], 5)) for hit in hits]


def test_search_texts_returns_the_hits_of_each_query_as_the_raw_call_does(client: Client, raw: HttpClient,
                                                                           live: Live) -> None:
    texts = query_texts(live.data)
    queries = client.search_texts("texts", texts, k=4)
    assert [type(query) for query in queries] == [QueryResults] * 3
    assert [query.text for query in queries] == texts
    expected = raw.post("/v1/collections/texts/search", json={"texts": texts, "k": 4}).json()
    assert [ids_scores(q.results) for q in queries] == [raw_ids_scores(q["hits"]) for q in expected["queries"]]
    assert all(len(query.results) == 4 and isinstance(query.results[0], SearchHit) for query in queries)
    assert queries[0].results[0].metadata["text"]  # texts keep their text

    single = client.search_texts("texts", texts[0], k=4)  # one string: a batch of one
    assert len(single) == 1 and ids_scores(single[0].results) == ids_scores(queries[0].results)


def test_search_texts_passes_filter_and_min_score(client: Client, live: Live) -> None:
    text = query_texts(live.data, 1)[0]
    label = live.data.query_texts[0]["label"]
    for filter in (SearchFilter(label=label), {"label": label}):
        hits = client.search_texts("texts", [text], k=10, filter=filter)[0].results
        assert hits and {hit.label for hit in hits} == {label}, hits
    unfiltered = client.search_texts("texts", [text], k=10)[0].results
    threshold = unfiltered[2].score
    kept = client.search_texts("texts", [text], k=10, min_score=threshold)[0].results
    assert [hit.id for hit in kept] == [hit.id for hit in unfiltered if hit.score >= threshold]


def test_search_images_takes_paths_bytes_and_pil_images(client: Client, raw: HttpClient, live: Live) -> None:
    path = face(live.data)
    with path.open("rb") as file:
        expected = raw.post("/v1/collections/images/search", files=[("file", (path.name, file))],
                            data={"k": "5"}).json()["queries"][0]
    as_path, as_bytes, as_pil = client.search_images("images", [path, path.read_bytes(), Image.open(path)], k=5)
    assert isinstance(as_path, ImageQueryResults)
    assert (as_path.filename, as_bytes.filename, as_pil.filename) == (path.name, "image-1", "image-2.png")
    assert ids_scores(as_path.results) == raw_ids_scores(expected["hits"])
    assert ids_scores(as_bytes.results) == ids_scores(as_path.results)
    assert [hit.id for hit in as_pil.results] == [hit.id for hit in as_path.results]  # PNG of the same pixels
    assert np.allclose([h.score for h in as_pil.results], [h.score for h in as_path.results], atol=1e-4)

    one = client.search_images("images", str(path), k=3, label="s31")  # one image, a str path; label filter
    assert len(one) == 1 and {hit.label for hit in one[0].results} == {"s31"}


def test_search_vector_and_more_like_match_the_raw_calls(client: Client, raw: HttpClient) -> None:
    dim = {c.name: c.dim for c in client.collections()}["images"]
    vector = np.random.default_rng(0).normal(size=dim).astype(np.float32)  # a numpy array is accepted
    hits = client.search_vector("images", vector, k=6)
    expected = raw.post("/v1/collections/images/search", json={"vector": vector.tolist(), "k": 6}).json()
    assert ids_scores(hits) == raw_ids_scores(expected["results"]) and len(hits) == 6

    similar = client.more_like("images", "s5/1.pgm", k=5)  # an id with a slash
    expected = raw.post("/v1/collections/images/search", json={"item_id": "s5/1.pgm", "k": 5}).json()
    assert ids_scores(similar) == raw_ids_scores(expected["results"])
    assert "s5/1.pgm" not in [hit.id for hit in similar]


@pytest.mark.parametrize("k", [1, 7])
def test_k_is_passed(client: Client, k: int) -> None:
    assert len(client.more_like("images", "s1/1.pgm", k=k)) == k
