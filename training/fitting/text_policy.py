"""The text policy a trained text encoder is exported with: its window, and truncate or chunk for longer texts.

``--long-texts auto`` embeds the validation classes both ways and keeps the better by MAP@R (a tie, e.g. when
no validation text is longer than the window, keeps ``truncate``: it costs one pass per text). Without
validation classes ``auto`` keeps ``truncate`` and says so in the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from arcsearch.index.bundle import TextPreprocessing
from arcsearch.index.long_texts import (
    apply_policy,
    embed_chunked,
    text_token_counts,
    token_template,
    window_tokens,
)
from arcsearch.training.evaluation.metrics import map_at_r
from arcsearch.training.evaluation.scoring import embed_texts

logger = logging.getLogger(__name__)

PolicyEmbed = Callable[[Sequence[str], TextPreprocessing], np.ndarray]  # (texts, policy) -> (N, D) unit rows


def embed_with_policy(model: nn.Module, texts: Sequence[str], policy: TextPreprocessing) -> np.ndarray:
    """(N, D) float32 L2-normalised embeddings of ``texts`` by an in-memory SentenceTransformer under ``policy``,
    as the exported bundle will embed them (the model's window is set to the policy's)."""
    apply_policy(model, policy)
    if policy.long_texts == "truncate":
        return embed_texts(model, texts)
    was_training = model.training
    model.eval()
    try:
        return embed_chunked(model, texts, policy=policy)
    finally:
        model.train(was_training)


def choose_long_texts(texts: Sequence[str], labels: Sequence[str], embed: PolicyEmbed, *,
                      max_seq_length: int) -> tuple[TextPreprocessing, dict[str, Any]]:
    """The better of truncate and chunk at ``max_seq_length`` tokens on validation ``texts`` with ``labels``, by
    MAP@R of ``embed(texts, policy)`` (truncate wins a tie); returns it and {"map_at_r": {policy: score}}."""
    scores = {}
    for name in ("truncate", "chunk"):
        policy = TextPreprocessing(max_seq_length=max_seq_length, long_texts=name)  # type: ignore[arg-type]
        scores[name] = map_at_r(embed(texts, policy), list(labels))
    best = "chunk" if scores["chunk"] > scores["truncate"] else "truncate"
    return TextPreprocessing(max_seq_length=max_seq_length, long_texts=best), {"map_at_r": scores}  # type: ignore[arg-type]


def resolve_text_policy(model: nn.Module, long_texts: str, validation: tuple[Sequence[str], Sequence[str]] | None
                        ) -> tuple[TextPreprocessing, dict[str, Any]]:
    """The policy for ``long_texts`` (truncate, chunk or auto) at the model's window, and how it was chosen."""
    window = int(model.max_seq_length)
    if long_texts != "auto":
        return TextPreprocessing(max_seq_length=window, long_texts=long_texts), {"long_texts": long_texts}  # type: ignore[arg-type]
    if validation is None or not validation[0]:
        logger.warning("--long-texts auto: no validation classes to choose on; keeping truncate")
        return TextPreprocessing(max_seq_length=window), {"long_texts": "truncate", "chosen_by": "no validation data"}
    texts, labels = validation
    text_tokens = window_tokens(TextPreprocessing(max_seq_length=window), token_template(model.tokenizer))
    longer = int((text_token_counts(model.tokenizer, texts) > text_tokens).sum())
    if not longer:
        logger.info("--long-texts auto: no validation text is longer than %d tokens; keeping truncate", window)
        return TextPreprocessing(max_seq_length=window), {"long_texts": "truncate", "longer_than_window": 0,
                                                          "chosen_by": "no long validation text"}
    policy, scores = choose_long_texts(texts, labels, lambda batch, p: embed_with_policy(model, batch, p),
                                       max_seq_length=window)
    logger.info("--long-texts auto: %s (validation MAP@R %s; %d of %d texts longer than the window)",
                policy.long_texts, scores["map_at_r"], longer, len(texts))
    return policy, {"long_texts": policy.long_texts, "longer_than_window": longer, "chosen_by": "validation MAP@R",
                    **scores}
