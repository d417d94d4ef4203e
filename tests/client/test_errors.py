"""Errors carry the server's status, code, message, details and request id; transport failures are wrapped."""

from __future__ import annotations

import httpx
import pytest

from arcsearch.client import (
    ApiError,
    ArcsearchError,
    BadRequest,
    Client,
    ClientError,
    Conflict,
    Forbidden,
    InvalidResponse,
    NotFound,
    Overloaded,
    RequestTimeout,
    ServerError,
    TransportError,
    Unauthorized,
    ValidationError,
)
from tests.client.fakes import Answer, error_json, scripted_server
from tests.client.helpers import READ_KEY, TEXT_EMBEDDER, Live
from tests.service.helpers import free_port


def test_unknown_collection_is_not_found_with_the_server_code(client: Client) -> None:
    with pytest.raises(NotFound) as caught:
        client.search_texts("nope", ["a dog"])
    error = caught.value
    assert isinstance(error, ClientError) and isinstance(error, ArcsearchError)
    assert (error.status, error.code) == (404, "collection_not_found") and "nope" in error.message
    assert error.request_id and len(error.request_id) >= 16  # the X-Request-ID the server answered with
    assert str(error).startswith("404 collection_not_found: ")
    with pytest.raises(NotFound, match="job_not_found"):
        client.job("0123abcd")


def test_validation_errors_keep_the_server_details(client: Client) -> None:
    with pytest.raises(ValidationError) as caught:
        client.search_texts("texts", ["a dog"], k=0)
    error = caught.value
    assert (error.status, error.code) == (422, "validation_error")
    assert error.details[0]["loc"] == ["body", "k"] and error.details[0]["type"]
    with pytest.raises(ValidationError, match="exactly one of 'source'"):
        client.reindex("texts")  # neither source nor items: the server says so


def test_request_id_sent_by_the_caller_comes_back_on_the_error(live: Live) -> None:
    with Client(live.url, headers={"X-Request-ID": "trace-42"}) as anonymous, pytest.raises(Unauthorized) as caught:
        anonymous.collections()
    assert caught.value.request_id == "trace-42"


def test_keys_unauthorized_without_or_with_a_wrong_key_forbidden_for_a_read_key(live: Live) -> None:
    for key in (None, "wrong-key"):
        with Client(live.url, api_key=key) as keyless, pytest.raises(Unauthorized) as caught:
            keyless.search_texts("texts", ["a dog"])
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    with Client(live.url, api_key=READ_KEY) as reader:
        assert reader.search_texts("texts", ["a dog"], k=1)[0].results  # a read key reads
        with pytest.raises(Forbidden) as caught:
            reader.create_collection("client-forbidden", embedder=TEXT_EMBEDDER)
        assert caught.value.code == "forbidden"
        assert reader.health().status == "ok" and reader.ready().status == "ready"


def test_conflict_and_bad_request_codes(client: Client) -> None:
    with pytest.raises(Conflict) as caught:
        client.create_collection("texts", embedder=TEXT_EMBEDDER)
    assert caught.value.code == "collection_exists"
    with pytest.raises(BadRequest) as caught:
        client.put_item("texts", "x", image=b"\x89PNG not really")
    assert caught.value.code == "wrong_modality"


def test_no_server_is_a_transport_error_with_the_httpx_cause() -> None:
    with Client(f"http://127.0.0.1:{free_port()}") as client, pytest.raises(TransportError) as caught:
        client.health()
    assert caught.value.code == "transport_error" and caught.value.status is None
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_a_slow_answer_is_a_request_timeout() -> None:
    with scripted_server(Answer(200, delay_s=1.0)) as (url, _), Client(url, timeout_s=0.2) as client, \
            pytest.raises(RequestTimeout) as caught:
        client.health()
    assert isinstance(caught.value, TimeoutError) and caught.value.code == "timeout"


def test_any_code_lands_in_the_class_of_its_status_and_other_bodies_are_read_too() -> None:
    answers = [Answer(418, error_json("teapot_code", "short and stout")),
               Answer(503, error_json("over_capacity"), headers={"Retry-After": "7"}),
               Answer(502, b"<html>Bad Gateway</html>", content_type="text/html"),
               Answer(200, b"<html>a login page</html>", content_type="text/html")]
    with scripted_server(*answers) as (url, _), Client(url) as client:
        with pytest.raises(ClientError) as teapot:
            client.health()
        with pytest.raises(Overloaded) as overloaded:
            client.health()
        with pytest.raises(ServerError) as gateway:
            client.health()
        with pytest.raises(InvalidResponse) as page:
            client.health()
    assert type(teapot.value) is ClientError and (teapot.value.code, teapot.value.message) == ("teapot_code",
                                                                                               "short and stout")
    assert (overloaded.value.code, overloaded.value.retry_after_s) == ("over_capacity", 7.0)
    assert type(gateway.value) is ServerError and (gateway.value.status, gateway.value.code) == (502, "http_error")
    assert "Bad Gateway" in gateway.value.message
    assert page.value.status == 200 and not isinstance(page.value, ApiError)
