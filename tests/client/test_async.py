"""AsyncClient against the live server: the same results as Client, the same errors."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from arcsearch.client import AsyncClient, Client, JobFailed, NotFound, Unauthorized
from tests.client.helpers import ADMIN_KEY, TEXT_EMBEDDER, Live, face, query_texts

pytestmark = pytest.mark.anyio


async def test_searches_match_the_blocking_client(live: Live, client: Client) -> None:
    texts = query_texts(live.data)
    path = face(live.data)
    async with AsyncClient(live.url, api_key=ADMIN_KEY) as aclient:
        queries, images, similar = await asyncio.gather(
            aclient.search_texts("texts", texts, k=3), aclient.search_images("images", [Image.open(path)], k=3),
            aclient.more_like("images", "s5/1.pgm", k=3))
        dim = {c.name: c.dim for c in await aclient.collections()}["texts"]
        by_vector = await aclient.search_vector("texts", [1.0] * dim, k=2)
    assert queries == client.search_texts("texts", texts, k=3)
    assert [hit.id for hit in images[0].results] == [hit.id for hit in client.search_images("images", path, k=3)[0]
                                                     .results]
    assert similar == client.more_like("images", "s5/1.pgm", k=3)
    assert by_vector == client.search_vector("texts", [1.0] * dim, k=2)


async def test_admin_operations_and_wait_for_job(live: Live) -> None:
    async with AsyncClient(live.url, api_key=ADMIN_KEY) as aclient:
        created = await aclient.create_collection("client-async", embedder=TEXT_EMBEDDER)
        try:
            assert created.size == 0 and (await aclient.ready()).collections["client-async"] == "ready"
            assert (await aclient.put_item("client-async", "a/1", text="a small dog", label="dog")).size == 1
            assert (await aclient.get_item("client-async", "a/1")).label == "dog"
            assert (await aclient.delete_item("client-async", "a/1")).status == "deleted"
            job = await aclient.wait_for_job(await aclient.reindex("client-async", source="texts.jsonl"),
                                             timeout_s=120, poll_s=0.1)
            assert (job.status, job.num_items) == ("succeeded", 100)
            assert (await aclient.job(job.job_id)).version == job.version
            with pytest.raises(JobFailed):
                await aclient.wait_for_job(await aclient.reindex("client-async", source="bad.jsonl"), timeout_s=120)
        finally:
            await aclient.delete_collection("client-async")
        with pytest.raises(NotFound) as caught:
            await aclient.get_item("client-async", "a/1")
        assert caught.value.code == "collection_not_found"


async def test_errors_are_the_same_classes(live: Live) -> None:
    async with AsyncClient(live.url) as keyless:
        assert (await keyless.health()).status == "ok"
        with pytest.raises(Unauthorized) as caught:
            await keyless.collections()
    assert (caught.value.status, caught.value.code) == (401, "unauthorized") and caught.value.request_id
