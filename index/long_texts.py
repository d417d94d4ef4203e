"""Texts longer than the encoder's window: cut by tokens into overlapping windows, each embedded, averaged.

Under a ``chunk`` policy (bundle.TextPreprocessing) a text of n text tokens (special tokens not counted) is
split into windows of w = max_seq_length - (the tokenizer's special tokens) tokens starting every
``stride`` tokens (default 3/4 of w, so consecutive windows share w/4 tokens), at most ``max_chunks``
windows; tokens past the last window are left out. Each window gets the model's special tokens, is embedded
and L2-normalised; the text's embedding is the mean of its windows' embeddings weighted by their token
counts, L2-normalised. A text that fits in one window gets exactly the embedding ``truncate`` gives it.
Windows of many texts go through the model together, sorted by length, ``batch_size`` windows per pass
(or one text's windows, if it has more).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from arcsearch.index.bundle import BundleError, TextPreprocessing

logger = logging.getLogger(__name__)

STRIDE_FRACTION = 0.75  # default stride: 3/4 of a window's text tokens (1/4 overlap)


@dataclass(frozen=True)
class TokenTemplate:
    """What the tokenizer puts around a text's tokens, and how a batch of windows is padded."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    pad_id: int
    token_type_ids: bool

    @property
    def specials(self) -> int:
        return len(self.prefix) + len(self.suffix)


@dataclass(frozen=True)
class Windows:
    """The windows of a batch of texts: token ids (special tokens not yet added), the text each belongs to, and
    its weight (text tokens, at least 1 so an empty text still has one window)."""

    ids: list[list[int]]
    owner: np.ndarray  # (W,) int64, index of the text
    weight: np.ndarray  # (W,) float32


def token_template(tokenizer: Any) -> TokenTemplate:
    """The special tokens a Hugging Face tokenizer adds around one text (found by tokenizing a word with and
    without them), its pad id, and whether its model takes token_type_ids."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    at = next((i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare), None)
    if not bare or at is None:
        raise BundleError(f"cannot tell the special tokens of tokenizer {type(tokenizer).__name__}: "
                          f"{full} does not contain {bare}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TokenTemplate(tuple(full[:at]), tuple(full[at + len(bare):]), int(pad_id),
                         "token_type_ids" in tokenizer.model_input_names)


def window_tokens(policy: TextPreprocessing, template: TokenTemplate) -> int:
    """Text tokens per window: the policy's max_seq_length less the special tokens."""
    tokens = policy.max_seq_length - template.specials
    if tokens < 1:
        raise BundleError(f"max_seq_length {policy.max_seq_length} leaves no room for text beside the "
                          f"{template.specials} special tokens")
    return tokens


def stride_tokens(policy: TextPreprocessing, window: int) -> int:
    """Tokens between the starts of consecutive windows (the policy's, else STRIDE_FRACTION of ``window``)."""
    stride = policy.chunk_stride_tokens or max(1, int(window * STRIDE_FRACTION))
    if stride > window:
        raise BundleError(f"chunk_stride_tokens {stride} is longer than a window's {window} text tokens: "
                          "tokens between windows would be left out")
    return stride


def chunk_spans(num_tokens: int, *, window: int, stride: int, max_chunks: int) -> list[tuple[int, int]]:
    """(start, end) token spans covering ``num_tokens`` tokens with windows of ``window`` tokens every ``stride``
    tokens, at most ``max_chunks``; one (0, 0) span for no tokens."""
    spans = [(0, min(num_tokens, window))]
    while spans[-1][1] < num_tokens and len(spans) < max_chunks:
        start = spans[-1][0] + stride
        spans.append((start, min(num_tokens, start + window)))
    return spans


def whole_token_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Each text's token ids, whole: no special tokens, no truncation."""
    return tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]


def text_token_counts(tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """(N,) int64 number of text tokens of each text (special tokens not counted, no truncation)."""
    return np.array([len(ids) for ids in whole_token_ids(tokenizer, texts)], np.int64)


def split_texts(tokenizer: Any, texts: Sequence[str], policy: TextPreprocessing, template: TokenTemplate) -> Windows:
    """The windows of ``texts`` under ``policy`` (see the module docstring)."""
    window = window_tokens(policy, template)
    stride = stride_tokens(policy, window)
    token_ids = whole_token_ids(tokenizer, texts)
    ids: list[list[int]] = []
    owner: list[int] = []
    capped = 0
    for position, text_ids in enumerate(token_ids):
        spans = chunk_spans(len(text_ids), window=window, stride=stride, max_chunks=policy.max_chunks)
        capped += spans[-1][1] < len(text_ids)
        ids += [list(text_ids[start:end]) for start, end in spans]
        owner += [position] * len(spans)
    if capped:
        logger.debug("%d of %d texts are longer than %d windows; their tail is left out", capped, len(texts),
                     policy.max_chunks)
    weight = np.array([max(1, len(chunk)) for chunk in ids], np.float32)
    return Windows(ids, np.array(owner, np.int64), weight)


def window_batch(chunks: Sequence[list[int]], template: TokenTemplate, device: torch.device) -> dict[str, torch.Tensor]:
    """Model inputs for windows: special tokens added, right-padded to the longest, on ``device``."""
    rows = [[*template.prefix, *chunk, *template.suffix] for chunk in chunks]
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), template.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, :len(row)] = 1
    features = {"input_ids": input_ids, "attention_mask": attention_mask}
    if template.token_type_ids:
        features["token_type_ids"] = torch.zeros_like(input_ids)
    return {key: value.to(device) for key, value in features.items()}


def pool_windows(vectors: np.ndarray, windows: Windows, num_texts: int) -> np.ndarray:
    """(num_texts, D) float32: each text's window vectors ((W, D), L2-normalised here) averaged with the windows'
    weights, L2-normalised."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sums = np.zeros((num_texts, vectors.shape[1]), np.float64)
    np.add.at(sums, windows.owner, unit * windows.weight[:, None])
    return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@torch.inference_mode()
def embed_chunked(model: Any, texts: Sequence[str], *, policy: TextPreprocessing, batch_size: int = 64) -> np.ndarray:
    """(len(texts), D) float32 L2-normalised embeddings of ``texts`` by a SentenceTransformer (as it is: put it in
    eval mode first), every window of each text embedded on the model's device and averaged. Windows of all
    texts are batched together, ``batch_size`` per pass, or the most windows one text has if that is more (so
    the service's one-pass call for a single long query stays one pass; at most ``max_chunks``)."""
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), np.float32)
    template = token_template(model.tokenizer)
    windows = split_texts(model.tokenizer, texts, policy, template)
    order = sorted(range(len(windows.ids)), key=lambda i: len(windows.ids[i]))
    per_pass = max(1, batch_size, int(np.bincount(windows.owner).max()))  # a one-text call: one pass
    vectors = np.zeros((len(windows.ids), 0), np.float32)
    for start in range(0, len(order), per_pass):
        picked = order[start:start + per_pass]
        batch = window_batch([windows.ids[i] for i in picked], template, model.device)
        out = model(batch)["sentence_embedding"].float().cpu().numpy()
        if vectors.shape[1] == 0:
            vectors = np.zeros((len(windows.ids), out.shape[1]), np.float32)
        vectors[picked] = out
    return pool_windows(vectors, windows, len(texts))


def position_limit(model: Any) -> int | None:
    """Most tokens the model's transformer takes in one pass (its position embeddings), if it says."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) else None


def apply_policy(model: Any, policy: TextPreprocessing) -> TextPreprocessing:
    """Set a SentenceTransformer's window to the policy's max_seq_length; returns the policy as ``stated_policy``
    gives it (BundleError for one the model cannot follow)."""
    stated = stated_policy(model, policy)
    model.max_seq_length = policy.max_seq_length
    return stated


def stated_policy(model: Any, policy: TextPreprocessing) -> TextPreprocessing:
    """``policy`` checked against a SentenceTransformer (window within its positions, room for text, stride within a
    window) with a chunk stride left to its default written out, as a bundle's manifest states it."""
    limit = position_limit(model)
    if limit is not None and policy.max_seq_length > limit:
        raise BundleError(f"max_seq_length {policy.max_seq_length} is longer than the model takes "
                          f"({limit} positions)")
    stride = stride_tokens(policy, window_tokens(policy, token_template(model.tokenizer)))
    return policy.model_copy(update={"chunk_stride_tokens": stride}) if policy.long_texts == "chunk" else policy
