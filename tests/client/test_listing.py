"""Listing items page by page, listing and cancelling jobs, through Client and AsyncClient."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import httpx
import pytest

from arcsearch.client import AsyncClient, Client, Conflict, Forbidden, ItemPage, ItemResponse, JobFailed, NotFound
from tests.client.helpers import ADMIN_KEY, READ_KEY, TEXT_EMBEDDER, TIMEOUT_S, Live

BIG_ROWS = 4000  # a job long enough to be cancelled while it runs


class CountingTransport(httpx.HTTPTransport):
    """httpx's transport, counting the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return super().handle_request(request)


@pytest.fixture()
def listed(client: Client) -> Iterator[str]:
    """A text collection of the 100 texts of texts.jsonl, deleted after the test."""
    client.create_collection("client-listed", embedder=TEXT_EMBEDDER)
    try:
        client.wait_for_job(client.reindex("client-listed", source="texts.jsonl"), timeout_s=120, poll_s=0.1)
        yield "client-listed"
    finally:
        client.delete_collection("client-listed")


def test_items_pages_lazily_over_every_item(live: Live, client: Client, listed: str) -> None:
    counting = CountingTransport()
    with Client(live.url, api_key=READ_KEY, timeout_s=TIMEOUT_S, transport=counting) as reader:
        first = list(itertools.islice(reader.items(listed, limit=30), 5))
        assert counting.sent == 1  # one page fetched for five items
        everything = list(reader.items(listed, limit=30))
        assert counting.sent == 1 + 4  # 100 items, 30 a page
    ids = [item.id for item in everything]
    assert ids == sorted(ids) and len(set(ids)) == 100 and everything[:5] == first
    assert all(isinstance(item, ItemResponse) for item in everything)
    assert client.get_item(listed, ids[42]) == everything[42]

    page = client.list_items(listed, limit=60)
    assert isinstance(page, ItemPage) and page.items == everything[:60] and page.next_cursor is not None
    rest = client.list_items(listed, cursor=page.next_cursor, limit=60)
    assert rest.items == everything[60:] and rest.next_cursor is None


def test_jobs_are_listed_and_a_running_one_is_cancelled(live: Live, client: Client, listed: str) -> None:
    rows = [json.loads(line) for line in (live.data_root / "texts.jsonl").read_text().splitlines()]
    (live.data_root / "big.jsonl").write_text("".join(json.dumps({**rows[i % len(rows)], "id": f"big-{i}"}) + "\n"
                                                      for i in range(BIG_ROWS)))
    version = next(c.version for c in client.collections() if c.name == listed)
    accepted = client.reindex(listed, source="big.jsonl")
    assert client.cancel_job(accepted).status in {"cancelled", "running"}
    with pytest.raises(JobFailed) as failed:
        client.wait_for_job(accepted, timeout_s=120, poll_s=0.1)
    assert failed.value.job.status == "cancelled"
    assert next(c.version for c in client.collections() if c.name == listed) == version

    jobs = client.jobs(collection=listed)
    assert [job.status for job in jobs] == ["cancelled", "succeeded"] and jobs[0].job_id == accepted.job_id
    assert [job.job_id for job in client.jobs(collection=listed, status="succeeded")] == [jobs[1].job_id]
    with pytest.raises(Conflict) as finished:
        client.cancel_job(accepted)
    assert finished.value.code == "job_finished"
    with pytest.raises(NotFound):
        client.cancel_job("no-such-job")
    with Client(live.url, api_key=READ_KEY, timeout_s=TIMEOUT_S) as reader, pytest.raises(Forbidden):
        reader.cancel_job(accepted)


@pytest.mark.anyio
async def test_the_async_twins(live: Live, client: Client, listed: str) -> None:
    async with AsyncClient(live.url, api_key=ADMIN_KEY, timeout_s=TIMEOUT_S) as aclient:
        items = [item async for item in aclient.items(listed, limit=40)]
        page = await aclient.list_items(listed, limit=3)
        accepted = await aclient.reindex(listed, source="texts.jsonl")
        await aclient.wait_for_job(accepted, timeout_s=120, poll_s=0.1)
        jobs = await aclient.jobs(collection=listed, status="succeeded")
        with pytest.raises(Conflict):
            await aclient.cancel_job(accepted)
    assert items == list(client.items(listed)) and len(items) == 100 and page.items == items[:3]
    assert jobs[0].job_id == accepted.job_id and len(jobs) == 2
