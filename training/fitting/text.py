"""Fitting a sentence-transformers model with a training objective on its sentence embedding."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from arcsearch.training.config import TextTrainConfig
from arcsearch.training.data.samplers import epoch_batches, resolve_sampler
from arcsearch.training.data.splits import length_bucketed_batches
from arcsearch.training.engine import distributed
from arcsearch.training.engine.loop import fit
from arcsearch.training.engine.results import Batch, FitResult
from arcsearch.training.evaluation.metrics import map_at_r
from arcsearch.training.evaluation.scoring import embed_texts
from arcsearch.training.objectives.registry import class_centres, make_objective

logger = logging.getLogger(__name__)


def load_sentence_model(name_or_path: str, *, device: torch.device,
                        max_seq_length: int | None = None) -> nn.Module:
    """A ``SentenceTransformer`` from a local folder or a model name (downloaded by the library if needed)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(name_or_path, device=str(device))
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def sentence_dimension(model: nn.Module) -> int:
    """Size of the model's sentence embedding (``get_embedding_dimension`` from v6, the old name before)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def tokenize(model: nn.Module, texts: Sequence[str], device: torch.device) -> dict[str, Any]:
    """The model's own tokenizer on a batch of texts; tensors moved to ``device``."""
    tokenizer = getattr(model, "preprocess", None) or model.tokenize  # ``tokenize`` before v6
    features = tokenizer(list(texts))
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in features.items()}


def token_lengths(model: nn.Module, texts: Sequence[str], *, chunk: int = 1024) -> np.ndarray:
    """(N,) number of tokens of each text under the model's tokenizer (after its truncation)."""
    lengths = [tokenize(model, texts[s:s + chunk], torch.device("cpu"))["attention_mask"].sum(dim=1)
               for s in range(0, len(texts), chunk)]
    return torch.cat(lengths).numpy() if lengths else np.zeros(0, np.int64)


def fit_text_encoder(model: nn.Module, texts: Sequence[str], codes: np.ndarray, *, config: TextTrainConfig,
                     device: torch.device, validation: tuple[Sequence[str], Sequence[str]] | None = None,
                     heldout: tuple[Sequence[str], Sequence[str]] | None = None) -> tuple[nn.Module, FitResult]:
    """Fine-tune ``model`` on texts with (N,) class ``codes``; returns (objective, result).

    ``validation`` = (texts, labels) of validation classes, scored by MAP@R after each epoch (selects the
    best epoch); ``heldout`` = (texts, labels) of held-out classes, scored after each epoch for the curves only.
    Under torchrun each rank trains on its slice of every global batch (``training.engine.distributed``).
    """
    dim = sentence_dimension(model)
    objective = make_objective(config.objective, int(codes.max()) + 1, dim, config.objective_params, seed=config.seed,
                               centres=(lambda: class_centres([(embed_texts(model, texts), codes)],
                                                              num_classes=int(codes.max()) + 1))
                               if config.uses_centre_init else None).to(device)
    rng = np.random.default_rng(config.seed)
    labels = torch.from_numpy(codes)
    lengths = token_lengths(model, texts)
    sampler = resolve_sampler(config.sampler, config.objective)

    def epoch_order(generator: np.random.Generator) -> list[np.ndarray]:
        return epoch_batches(sampler, codes, batch_size=config.batch_size, samples_per_class=config.samples_per_class,
                             rng=generator, shuffled=lambda: length_bucketed_batches(
                                 lengths, batch_size=config.batch_size, rng=generator))

    def batches(epoch: int) -> Iterator[Batch]:
        for index in epoch_order(rng):
            if not distributed.keep_batch(index):
                continue
            (index,) = distributed.shard(index)
            yield tokenize(model, [texts[i] for i in index], device), labels[index].to(device)

    def embed(features: dict[str, Any]) -> torch.Tensor:
        return model(features)["sentence_embedding"]

    def score_on(data: tuple[Sequence[str], Sequence[str]]) -> Callable[[], float]:
        return lambda: map_at_r(embed_texts(model, data[0]), data[1])

    result = fit(model, objective, batches=batches, embed=embed, config=config,
                 steps_per_epoch=len(epoch_order(np.random.default_rng(0))),
                 validate=score_on(validation) if validation is not None else None, rng=rng,
                 monitor=score_on(heldout) if heldout is not None else None)
    return objective, result
