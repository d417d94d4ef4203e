"""Collections, items and re-index jobs through the client, on collections these tests create themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from httpx import Client as HttpClient
from PIL import Image

from arcsearch.client import (
    Client,
    CollectionSummary,
    ItemChanged,
    ItemResponse,
    JobAccepted,
    JobFailed,
    JobStatus,
    JobTimeout,
    NotFound,
    ReindexItem,
)
from tests.client.helpers import IMAGE_EMBEDDER, TEXT_EMBEDDER, Live, face

ODD_ID = "notes/a b?c#d%e"  # a slash, a space and characters that mean something in a URL


@pytest.fixture()
def notes(client: Client) -> Iterator[str]:
    """A new, empty text collection, deleted after the test."""
    created = client.create_collection("client-notes", embedder=TEXT_EMBEDDER, index_factory="Flat")
    assert isinstance(created, CollectionSummary)
    assert (created.name, created.modality, created.size, created.index_type) == ("client-notes", "text", 0, "Flat")
    yield created.name
    client.delete_collection(created.name)


def test_collections_lists_what_the_server_lists(client: Client, raw: HttpClient) -> None:
    listed = client.collections()
    assert all(isinstance(summary, CollectionSummary) for summary in listed)
    assert [s.model_dump() for s in listed] == raw.get("/v1/collections").json()["collections"]
    assert {("images", "image"), ("texts", "text")} <= {(s.name, s.modality) for s in listed}


def test_items_are_put_read_and_deleted(client: Client, raw: HttpClient, notes: str) -> None:
    put = client.put_item(notes, ODD_ID, text="a small dog barked at the postman", label="dog",
                          metadata={"lang": "en"})
    assert isinstance(put, ItemChanged) and (put.id, put.status, put.size) == (ODD_ID, "created", 1)
    assert client.put_item(notes, "n2", text="an oak tree in the park", label="tree").size == 2
    assert client.put_item(notes, "..", text="a dot dot id", label="dots").id == ".."  # not a dot segment
    assert client.get_item(notes, "..").label == "dots" and client.delete_item(notes, "..").size == 2

    item = client.get_item(notes, ODD_ID)
    assert isinstance(item, ItemResponse)
    assert (item.id, item.label, item.metadata) == (ODD_ID, "dog", {"lang": "en", "text": "a small dog barked at "
                                                                    "the postman"})
    hits = client.search_texts(notes, ["a puppy"], k=2)[0].results
    assert [hit.id for hit in hits] == [ODD_ID, "n2"]
    assert [hit.id for hit in client.more_like(notes, ODD_ID, k=2)] == ["n2"]

    assert client.put_item(notes, ODD_ID, text="a black cat", label="cat").status == "replaced"
    deleted = client.delete_item(notes, ODD_ID)
    assert (deleted.status, deleted.size) == ("deleted", 1)
    with pytest.raises(NotFound) as caught:
        client.get_item(notes, ODD_ID)
    assert caught.value.code == "item_not_found" and ODD_ID in caught.value.message
    assert client.collections() and notes in {s.name for s in client.collections()}


def test_reindex_from_a_source_and_wait_for_the_job(client: Client, notes: str) -> None:
    accepted = client.reindex(notes, source="texts.jsonl")
    assert isinstance(accepted, JobAccepted) and accepted.status in {"queued", "running"}
    done = client.wait_for_job(accepted, timeout_s=120, poll_s=0.1)
    assert isinstance(done, JobStatus)
    assert (done.status, done.num_items, done.collection) == ("succeeded", 100, notes)
    assert client.job(done.job_id) == done  # by id, the same state
    summary = {s.name: s for s in client.collections()}[notes]
    assert (summary.size, summary.version) == (100, done.version)
    assert summary.last_reindex is not None and summary.last_reindex.job_id == done.job_id


def test_reindex_with_inline_items(client: Client, notes: str) -> None:
    items = [{"id": "i1", "text": "a red apple", "label": "fruit"},
             ReindexItem(id="i2", text="a wooden chair", label="furniture", metadata={"room": "kitchen"})]
    job = client.wait_for_job(client.reindex(notes, items=items).job_id, timeout_s=120, poll_s=0.1)
    assert job.num_items == 2
    assert client.get_item(notes, "i2").metadata["room"] == "kitchen"
    assert client.search_texts(notes, "an orange", k=1)[0].results[0].id == "i1"


def test_a_failed_job_raises_job_failed_with_its_state(client: Client, notes: str) -> None:
    with pytest.raises(JobFailed) as caught:
        client.wait_for_job(client.reindex(notes, source="bad.jsonl"), timeout_s=120, poll_s=0.1)
    job = caught.value.job
    assert caught.value.code == "job_failed" and job.status == "failed" and "no readable item" in (job.error or "")
    assert {failure.id for failure in job.failures} == {"line 1", "line 2"}


def test_a_job_still_running_at_the_timeout_raises_job_timeout_and_goes_on(client: Client, notes: str) -> None:
    accepted = client.reindex(notes, source="texts.jsonl")
    with pytest.raises(JobTimeout) as caught:
        client.wait_for_job(accepted, timeout_s=0.05, poll_s=0.01)
    assert isinstance(caught.value, TimeoutError) and caught.value.job.status in {"queued", "running"}
    assert client.wait_for_job(accepted, timeout_s=120, poll_s=0.1).status == "succeeded"


def test_image_items_from_paths_bytes_and_pil_images(client: Client, live: Live) -> None:
    client.create_collection("client-faces", embedder=IMAGE_EMBEDDER)
    try:
        people = live.data_root / "faces"
        job = client.wait_for_job(client.reindex("client-faces", items=[
            {"id": "p1", "image": people / "s1" / "1.pgm", "label": "s1"},
            {"id": "p2", "image": (people / "s2" / "1.pgm").read_bytes(), "label": "s2"}]), timeout_s=120)
        assert job.num_items == 2
        put = client.put_item("client-faces", "p3", image=Image.open(people / "s1" / "2.pgm"), label="s1")
        assert (put.status, put.size) == ("created", 3)
        assert client.search_images("client-faces", face(live.data, "s1", 3), k=1)[0].results[0].label == "s1"
        assert client.wait_for_job(client.reindex("client-faces", source="faces"), timeout_s=120).num_items == 6
    finally:
        client.delete_collection("client-faces")
    assert "client-faces" not in {s.name for s in client.collections()}
