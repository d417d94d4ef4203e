"""The optional retry of 503/429 answers: Retry-After honoured, tries and waits bounded, off by default."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from arcsearch.client import AsyncClient, Client, NotFound, Overloaded, Retry, TooManyRequests
from arcsearch.client._errors import retry_after_s
from tests.client.fakes import Answer, error_json, scripted_server

BUSY = Answer(503, error_json("overloaded"), headers={"Retry-After": "1"})
OK = Answer(200, b'{"status": "ok"}')


def test_without_retry_a_503_is_raised_at_once() -> None:
    with scripted_server(BUSY, OK) as (url, script), Client(url) as client, pytest.raises(Overloaded) as caught:
        client.health()
    assert len(script.received) == 1 and caught.value.retry_after_s == 1.0


def test_retry_waits_what_retry_after_asks_then_succeeds() -> None:
    now = Answer(429, error_json("too_many"), headers={"Retry-After": "0"})
    with scripted_server(BUSY, now, OK) as (url, script), Client(url, retry=Retry(attempts=3)) as client:
        started = time.monotonic()
        assert client.health().status == "ok"
        elapsed_s = time.monotonic() - started
    assert len(script.received) == 3 and 1.0 <= elapsed_s < 5.0


def test_retry_stops_after_its_attempts_and_raises_the_last_error() -> None:
    busy = Answer(429, error_json("too_many"))  # no Retry-After: backoff_s, doubled
    with scripted_server(busy) as (url, script), Client(url, retry=Retry(attempts=3, backoff_s=0.05)) as client, \
            pytest.raises(TooManyRequests):
        client.health()
    assert len(script.received) == 3


def test_a_retry_after_longer_than_max_wait_is_not_waited_out() -> None:
    slow = Answer(503, error_json("overloaded"), headers={"Retry-After": "120"})
    with scripted_server(slow, OK) as (url, script), Client(url, retry=Retry(max_wait_s=10)) as client:
        started = time.monotonic()
        with pytest.raises(Overloaded) as caught:
            client.health()
    assert len(script.received) == 1 and caught.value.retry_after_s == 120.0 and time.monotonic() - started < 5


def test_other_errors_are_never_retried() -> None:
    with scripted_server(Answer(404, error_json("collection_not_found")), OK) as (url, script), \
            Client(url, retry=Retry()) as client, pytest.raises(NotFound):
        client.health()
    assert len(script.received) == 1


@pytest.mark.anyio
async def test_the_async_client_retries_the_same_way() -> None:
    with scripted_server(Answer(503, error_json("overloaded"), headers={"Retry-After": "0"}), OK) as (url, script):
        async with AsyncClient(url, retry=Retry(attempts=2)) as client:
            assert (await client.health()).status == "ok"
    assert len(script.received) == 2


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now_s = 1_700_000_000.0
    date = email.utils.formatdate(now_s + 30, usegmt=True)
    assert retry_after_s(httpx.Headers({"Retry-After": date}), now_s=now_s) == pytest.approx(30.0)
    assert retry_after_s(httpx.Headers({"Retry-After": " 12 "})) == 12.0
    assert retry_after_s(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after_s(httpx.Headers({})) is None
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)
