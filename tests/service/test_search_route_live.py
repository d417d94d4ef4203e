"""``POST /v1/collections/{name}/search`` through a real uvicorn process (conftest.server): JSON texts, vectors
and item ids, multipart images; each query's hits once; the deprecated aliases; ``Allow`` on 405; and the
rules the OpenAPI document states (one ``oneOf`` per "exactly one of" rule, the upload field required,
bounded numbers in metadata)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.helpers import ServiceData, assert_error

NEW_SHAPE = {"collection", "version", "queries"}  # each query's hits once: no "results" beside "queries"
PGM = "image/x-portable-graymap"


@pytest.fixture(scope="module")
def openapi(server: dict[str, Any]) -> dict[str, Any]:
    """The live server's /openapi.json."""
    response = httpx.get(f"{server['url']}/openapi.json", timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def face_parts(service_data: ServiceData, *names: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (name, (service_data.faces_dir / name).read_bytes(), PGM)) for name in names]


def assert_ranked(hits: list[dict[str, Any]], k: int) -> None:
    assert len(hits) == k and all(set(hit) == {"id", "score", "label", "source", "metadata"} for hit in hits)
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True), scores


def test_uploaded_images_get_one_query_each_with_their_hits_once(http: httpx.Client,
                                                                  service_data: ServiceData) -> None:
    response = http.post("/v1/collections/images/search", files=face_parts(service_data, "s5/1.pgm", "s7/2.pgm"),
                         data={"k": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == NEW_SHAPE and body["collection"] == "images" and body["version"]
    assert [query["filename"] for query in body["queries"]] == ["s5/1.pgm", "s7/2.pgm"]  # as sent
    for query, own_id in zip(body["queries"], ["s5/1.pgm", "s7/2.pgm"], strict=True):
        assert_ranked(query["hits"], 3)
        assert query["hits"][0]["id"] == own_id  # the indexed copy of the query image itself


def test_the_label_form_field_filters_image_hits(http: httpx.Client, service_data: ServiceData) -> None:
    response = http.post("/v1/collections/images/search", files=face_parts(service_data, "s5/1.pgm"),
                         data={"k": "4", "label": "s9"})
    assert response.status_code == 200, response.text
    assert {hit["label"] for hit in response.json()["queries"][0]["hits"]} == {"s9"}


def test_texts_get_one_query_each(http: httpx.Client, service_data: ServiceData) -> None:
    texts = [row["text"] for row in service_data.query_texts[:3]]
    body = http.post("/v1/collections/texts/search", json={"texts": texts, "k": 2}).json()
    assert set(body) == NEW_SHAPE and [query["text"] for query in body["queries"]] == texts
    for query in body["queries"]:
        assert_ranked(query["hits"], 2)
    single = http.post("/v1/collections/texts/search", json={"text": texts[0], "k": 2}).json()
    assert set(single) == NEW_SHAPE and single["queries"] == body["queries"][:1]


def test_vectors_and_item_ids_get_one_query_each(http: httpx.Client) -> None:
    vectors = np.random.default_rng(7).standard_normal((2, 128)).round(4).tolist()
    body = http.post("/v1/collections/images/search", json={"vectors": vectors, "k": 5}).json()
    assert set(body) == NEW_SHAPE and len(body["queries"]) == 2
    for query in body["queries"]:
        assert query["item_id"] is None
        assert_ranked(query["hits"], 5)
    ids = ["s5/1.pgm", "s7/2.pgm"]
    by_id = http.post("/v1/collections/images/search", json={"item_ids": ids, "k": 4}).json()
    assert set(by_id) == NEW_SHAPE and [query["item_id"] for query in by_id["queries"]] == ids
    for query, item_id in zip(by_id["queries"], ids, strict=True):
        assert_ranked(query["hits"], 4)
        assert item_id not in {hit["id"] for hit in query["hits"]}  # an item searches for others like it


def test_the_old_single_vector_shape_keeps_its_deprecated_results_copy(http: httpx.Client) -> None:
    body = http.post("/v1/collections/images/search", json={"item_id": "s5/1.pgm", "k": 3}).json()
    assert set(body) == NEW_SHAPE | {"results"} and body["results"] == body["queries"][0]["hits"]


def test_a_vector_of_another_dimension_is_400_wrong_dimension(http: httpx.Client) -> None:
    error = assert_error(http.post("/v1/collections/images/search", json={"vectors": [[0.5] * 128, [0.5] * 3]}),
                         400, "wrong_dimension")
    assert error["details"] == {"dim": 128, "given": 3} and "vectors.1" in error["message"]


def test_a_query_of_the_wrong_modality_is_400_and_says_what_to_send(http: httpx.Client,
                                                                    service_data: ServiceData) -> None:
    error = assert_error(http.post("/v1/collections/images/search", json={"text": "a dog"}), 400, "wrong_modality")
    assert "multipart/form-data 'file' parts" in error["message"]
    error = assert_error(http.post("/v1/collections/texts/search", files=face_parts(service_data, "s5/1.pgm")),
                         400, "wrong_modality")
    assert "'text' or 'texts'" in error["message"]


def test_another_content_type_is_415(http: httpx.Client) -> None:
    response = http.post("/v1/collections/texts/search", content=b"text=a dog",
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert "multipart/form-data" in assert_error(response, 415, "unsupported_media_type")["message"]


@pytest.mark.parametrize(("path", "request_kwargs", "collection"), [
    ("/v1/texts/search", {"json": {"text": "a dog", "k": 2}}, "texts"),
    ("/v1/images/search", {"data": {"k": "2"}}, "images"),
])
def test_the_old_routes_answer_as_before_marked_deprecated_with_a_link_to_the_new_one(
        http: httpx.Client, service_data: ServiceData, path: str, request_kwargs: dict[str, Any],
        collection: str) -> None:
    if "data" in request_kwargs:
        request_kwargs = {**request_kwargs, "files": face_parts(service_data, "s5/1.pgm")}
    response = http.post(path, **request_kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["deprecation"] == "true"
    assert response.headers["link"] == f'</v1/collections/{collection}/search>; rel="successor-version"'
    body = response.json()
    assert body["results"] == body["queries"][0]["results"] and len(body["results"]) == 2  # the old shape


def test_the_old_routes_name_the_new_one_for_a_collection_of_the_other_modality(http: httpx.Client) -> None:
    error = assert_error(http.post("/v1/texts/search", json={"text": "a dog", "collection": "images"}),
                         400, "wrong_modality")
    assert error["message"].endswith("query it with POST /v1/collections/images/search")


def test_openapi_marks_the_old_routes_deprecated_and_the_new_one_not(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    assert paths["/v1/texts/search"]["post"]["deprecated"] is True
    assert paths["/v1/images/search"]["post"]["deprecated"] is True
    assert "deprecated" not in paths["/v1/collections/{name}/search"]["post"]
    results = openapi["components"]["schemas"]["SearchResponse"]["properties"]["results"]
    assert results["deprecated"] is True


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PATCH", "/v1/collections", "GET, POST"),
    ("GET", "/v1/collections/texts/search", "POST"),
    ("PATCH", "/v1/collections/texts/items/t1", "DELETE, GET, PUT"),
    ("PUT", "/v1/collections/texts", "DELETE"),
])
def test_405_lists_every_method_of_the_path_in_allow(http: httpx.Client, method: str, path: str,
                                                     allowed: str) -> None:
    response = http.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed


def one_of_required(schema: dict[str, Any]) -> list[list[str]]:
    """The ``required`` list of each ``oneOf`` branch of ``schema``."""
    return [branch["required"] for branch in schema["oneOf"]]


def test_openapi_states_each_exactly_one_of_rule_as_one_of(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert one_of_required(schemas["SearchRequest"]) == [["text"], ["texts"], ["vector"], ["vectors"], ["item_id"],
                                                         ["item_ids"]]
    assert one_of_required(schemas["TextSearchRequest"]) == [["text"], ["texts"]]
    assert one_of_required(schemas["ReindexRequest"]) == [["source"], ["items"]]
    assert one_of_required(schemas["ItemUpsert"]) == [["text"], ["image_base64"]]
    for branch in schemas["SearchRequest"]["oneOf"]:
        (name,) = branch["required"]
        assert branch["properties"][name]["not"] == {"type": "null"}  # given, and not null


def test_openapi_marks_the_upload_field_required(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    body = openapi["paths"]["/v1/collections/{name}/search"]["post"]["requestBody"]
    assert body["required"] is True
    form_ref = body["content"]["multipart/form-data"]["schema"]["$ref"]
    upload = schemas[form_ref.rsplit("/", 1)[-1]]
    assert upload["required"] == ["file"] and upload["properties"]["file"]["minItems"] == 1
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/SearchRequest")
    old_ref = openapi["paths"]["/v1/images/search"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "file" in schemas[old_ref["schema"]["$ref"].rsplit("/", 1)[-1]]["required"]


def schema_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            yield from schema_nodes(child)


def test_openapi_states_bounds_as_json_schema_keywords(openapi: dict[str, Any]) -> None:
    """``minimum``/``maximum``, never pydantic's ``ge``/``le`` (a JSON Schema tool ignores those)."""
    schemas = openapi["components"]["schemas"]
    assert not [node for node in schema_nodes(schemas) if {"ge", "le", "gt", "lt"} & set(node)]
    k = schemas["SearchRequest"]["properties"]["k"]
    assert k["type"] == "integer" and k["minimum"] == 1 and k["maximum"] <= 1000


def test_metadata_numbers_are_bounded_in_the_schema_and_by_the_server(http: httpx.Client,
                                                                      openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    metadata = schemas["ItemUpsert"]["properties"]["metadata"]
    value = schemas[metadata["additionalProperties"]["$ref"].rsplit("/", 1)[-1]]
    (number,) = [branch for branch in value["anyOf"] if branch.get("type") == "number"]
    assert (number["minimum"], number["maximum"]) == (-(2**63), 2**63 - 1)  # exact: no float rounds to 2**63
    assert type(number["maximum"]) is int
    for bad in (2**63, -(2**63) - 1, 1e19):
        response = http.put("/v1/collections/scratch/items/bounds", json={"text": "a dog", "metadata": {"n": [bad]}})
        error = assert_error(response, 422, "validation_error")
        assert "metadata.n[0]" in error["message"] and "64-bit" in error["message"]


def test_filter_numbers_are_bounded_in_the_schema_and_by_the_server(http: httpx.Client,
                                                                    openapi: dict[str, Any]) -> None:
    metadata = openapi["components"]["schemas"]["SearchFilter"]["properties"]["metadata"]
    assert metadata["additionalProperties"] is False  # a key must match the pattern
    (value,) = metadata["patternProperties"].values()
    numeric = [branch for branch in value["anyOf"] if branch["type"] in ("integer", "number")]
    assert [(branch["minimum"], branch["maximum"]) for branch in numeric] == [(-(2**63), 2**63 - 1)] * 2
    assert http.post("/v1/collections/texts/search", json={"text": "a dog", "filter": {"metadata": {
        "n": 2**63 - 1}}}).status_code == 200
    for bad in (2**63, 10**400):
        response = http.post("/v1/collections/texts/search", json={"text": "a dog", "filter": {"metadata": {"n": bad}}})
        assert_error(response, 422, "validation_error")

