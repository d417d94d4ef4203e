"""Texts longer than the encoder's window: the bundle's policy (truncate or chunk), the chunk cap, old bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from arcsearch.index.bundle import MANIFEST_NAME, BundleError, TextPreprocessing, read_embedder_manifest
from arcsearch.index.embedder import TextEmbedder, load_embedder
from arcsearch.index.long_texts import chunk_spans
from tests.bundles import prepared, with_text_policy

WINDOW = 32  # tokens per pass, [CLS] and [SEP] included: 30 text tokens
STRIDE = 20


@pytest.fixture(scope="module")
def long_text() -> str:
    """About 150 tokens: 12 real glosses of one lexicographer file (7 windows of 30 tokens, 20 apart)."""
    rows = [json.loads(line) for line in prepared().lexfiles_file.read_text(encoding="utf-8").splitlines()]
    return " ".join([row["text"] for row in rows if row["label"] == "noun.animal"][:12])


@pytest.fixture(scope="module")
def policies(text_embedder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, TextEmbedder]:
    """The MiniLM bundle under a 32-token window: truncated, chunked, and chunked with at most 2 windows."""
    root = tmp_path_factory.mktemp("policies")
    made = {"truncate": {"long_texts": "truncate"},
            "chunk": {"long_texts": "chunk", "chunk_stride_tokens": STRIDE},
            "capped": {"long_texts": "chunk", "chunk_stride_tokens": STRIDE, "max_chunks": 2}}
    return {name: load_embedder(with_text_policy(text_embedder_dir, root / name, max_seq_length=WINDOW, **policy),
                                device="cpu") for name, policy in made.items()}  # type: ignore[misc]


def token_ids(embedder: TextEmbedder, text: str) -> list[int]:
    return embedder.model.tokenizer(text, add_special_tokens=False)["input_ids"]


def one_window(embedder: TextEmbedder, ids: list[int]) -> np.ndarray:
    """(D,) the model's L2-normalised embedding of one window of text token ids, [CLS] ... [SEP], no padding."""
    tokenizer = embedder.model.tokenizer
    row = torch.tensor([[tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]])
    features = {"input_ids": row, "attention_mask": torch.ones_like(row), "token_type_ids": torch.zeros_like(row)}
    with torch.inference_mode():
        vector = embedder.model(features)["sentence_embedding"][0].numpy()
    return vector / np.linalg.norm(vector)


def with_tail(embedder: TextEmbedder, text: str, *, after_tokens: int, tail: str) -> str:
    """``text`` with everything after its first ``after_tokens`` tokens replaced by ``tail``."""
    head = embedder.model.tokenizer.decode(token_ids(embedder, text)[:after_tokens])
    return f"{head} {tail}"


def test_spans_cover_a_text_in_overlapping_windows_up_to_the_cap() -> None:
    assert chunk_spans(0, window=30, stride=20, max_chunks=16) == [(0, 0)]
    assert chunk_spans(30, window=30, stride=20, max_chunks=16) == [(0, 30)]
    assert chunk_spans(75, window=30, stride=20, max_chunks=16) == [(0, 30), (20, 50), (40, 70), (60, 75)]
    assert chunk_spans(1000, window=30, stride=20, max_chunks=3) == [(0, 30), (20, 50), (40, 70)]


def test_a_long_text_is_embedded_from_all_its_chunks(policies: dict[str, TextEmbedder], long_text: str) -> None:
    embedder = policies["chunk"]
    ids = token_ids(embedder, long_text)
    spans = chunk_spans(len(ids), window=WINDOW - 2, stride=STRIDE, max_chunks=16)
    assert len(spans) >= 4 and spans[-1][1] == len(ids)  # the whole text, in several windows
    chunks = np.stack([one_window(embedder, ids[start:end]) for start, end in spans])
    weights = np.array([end - start for start, end in spans], np.float64)[:, None]
    expected = (chunks * weights).sum(axis=0)
    expected /= np.linalg.norm(expected)
    (got,) = embedder.embed_texts([long_text])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert float(got @ chunks[0]) < 0.99  # not just the first window


def test_chunk_sees_the_tail_beyond_the_window_and_truncate_does_not(policies: dict[str, TextEmbedder],
                                                                     long_text: str) -> None:
    changed = with_tail(policies["chunk"], long_text, after_tokens=2 * WINDOW,
                        tail="a stock exchange where shares are traded for money")
    for name, moved in (("truncate", False), ("chunk", True)):
        original, altered = policies[name].embed_texts([long_text, changed])
        assert (float(original @ altered) < 0.999) is moved, name


def test_past_the_chunk_cap_the_tail_is_left_out(policies: dict[str, TextEmbedder], long_text: str) -> None:
    embedder = policies["capped"]  # 2 windows: text tokens 0-29 and 20-49
    beyond = with_tail(embedder, long_text, after_tokens=STRIDE + WINDOW, tail="a stock exchange for shares")
    within = with_tail(embedder, long_text, after_tokens=WINDOW, tail="a stock exchange for shares")
    original, far, near = embedder.embed_texts([long_text, beyond, within])
    assert float(original @ far) > 0.99999
    assert float(original @ near) < 0.999


def test_a_text_within_the_window_gets_the_same_vector_under_both_policies(policies: dict[str, TextEmbedder]
                                                                            ) -> None:
    texts = ["a dog runs in the park", "", "the stock market fell"]
    np.testing.assert_allclose(policies["chunk"].embed_texts(texts), policies["truncate"].embed_texts(texts),
                               atol=1e-5)


def test_windows_of_many_texts_batched_together_give_each_text_its_own_vector(policies: dict[str, TextEmbedder],
                                                                              long_text: str) -> None:
    embedder = policies["chunk"]
    texts = [long_text, "a small dog", long_text[: len(long_text) // 2], "x " * 100]
    together = embedder.embed_texts(texts, batch_size=3)
    alone = np.concatenate([embedder.embed_texts([text], batch_size=64) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert together.shape == (4, embedder.dim) and together.dtype == np.float32


def test_the_policy_round_trips_through_the_manifest(policies: dict[str, TextEmbedder]) -> None:
    policy = policies["capped"].manifest.text
    assert policy == TextPreprocessing(max_seq_length=WINDOW, long_texts="chunk", chunk_stride_tokens=STRIDE,
                                       max_chunks=2)
    assert policies["capped"].model.max_seq_length == WINDOW


def test_a_bundle_written_before_the_policy_truncates_as_before(text_embedder_dir: Path, tmp_path: Path,
                                                                long_text: str) -> None:
    old = with_text_policy(text_embedder_dir, tmp_path / "old")
    manifest = json.loads((old / MANIFEST_NAME).read_text())
    manifest["text"] = {"max_seq_length": manifest["text"]["max_seq_length"]}  # as format 2 bundles were written
    (old / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert read_embedder_manifest(old).text == TextPreprocessing(max_seq_length=256)
    embedder = load_embedder(old, device="cpu")
    expected = embedder.model.encode([long_text * 3], normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(embedder.embed_texts([long_text * 3]), expected, atol=1e-6)


def test_the_exported_bundle_states_its_chunk_stride(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from arcsearch.training.export import export_text_embedder

    model = SentenceTransformer(str(prepared().minilm_dir), device="cpu", local_files_only=True)
    bundle = export_text_embedder(model, tmp_path / "bundle", backbone="minilm",
                                  text_policy=TextPreprocessing(max_seq_length=66, long_texts="chunk"))
    assert read_embedder_manifest(bundle).text == TextPreprocessing(max_seq_length=66, long_texts="chunk",
                                                                    chunk_stride_tokens=48)  # 3/4 of 64


@pytest.mark.parametrize(("policy", "message"), [
    ({"max_seq_length": 4096}, "512 positions"),
    ({"long_texts": "chunk", "chunk_stride_tokens": 40}, "chunk_stride_tokens 40")])
def test_a_policy_the_model_cannot_follow_is_refused(text_embedder_dir: Path, tmp_path: Path,
                                                     policy: dict[str, object], message: str) -> None:
    bundle = with_text_policy(text_embedder_dir, tmp_path / "bad", **({"max_seq_length": WINDOW} | policy))
    with pytest.raises(BundleError, match=message):
        load_embedder(bundle, device="cpu")
