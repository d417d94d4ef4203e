"""Fitting an image encoder with a training objective on decoded images (see ``training.engine.loop.fit``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.training.config import ImageTrainConfig
from arcsearch.training.data.images import Augmentation, image_batch
from arcsearch.training.data.samplers import epoch_batches, resolve_sampler
from arcsearch.training.data.splits import shuffled_batches
from arcsearch.training.engine import distributed
from arcsearch.training.engine.loop import fit
from arcsearch.training.engine.trainer import Batch, FitResult
from arcsearch.training.evaluation.baselines import backbone_baseline
from arcsearch.training.evaluation.metrics import map_at_r
from arcsearch.training.evaluation.scoring import embed_images
from arcsearch.training.objectives.registry import class_centres, make_objective

logger = logging.getLogger(__name__)


@torch.no_grad()
def init_projection_pca(encoder: nn.Module, images: Sequence[Image.Image], *, params: ImagePreprocessing,
                        device: torch.device) -> None:
    """Set the encoder's linear ``projection`` to the top principal components of its pooled backbone
    features on ``images`` (mean-centred), so that training starts from the pretrained geometry
    rather than a random projection. Components beyond the number of images keep their random init."""
    features = torch.from_numpy(embed_images(backbone_baseline(encoder), images, params, device=device,
                                             normalise=False)).double()
    mean = features.mean(dim=0)
    _, _, components = torch.linalg.svd(features - mean, full_matrices=False)  # (min(N, F), F)
    k = min(encoder.projection.out_features, components.shape[0])
    weight = encoder.projection.weight
    weight[:k] = components[:k].to(weight)
    encoder.projection.bias.copy_(-(weight @ mean.to(weight)))


def view_batch(images: Sequence[Image.Image], index: np.ndarray, params: ImagePreprocessing,
               aug: Augmentation | None, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """This rank's (n, 3, H, W) views of the global batch ``images[index]``, and their (n,) positions.

    In one process the views are augmented from ``rng`` in turn. Under torchrun each image of the global
    batch gets its own generator seeded from ``rng`` (one draw per batch, the same on every rank), so that
    the ranks' generators stay in step while each augments only its own slice; with augmentation a
    multi-rank run is therefore statistically equivalent to, not identical with, a one-process run.
    """
    if aug is None or not distributed.is_distributed():
        (index,) = distributed.shard(index)
        return image_batch([images[i] for i in index], params, aug=aug, rng=rng), index
    index, seeds = distributed.shard(index, rng.integers(2**63, size=len(index)))
    return torch.cat([image_batch([images[i]], params, aug=aug, rng=np.random.default_rng(seed))
                      for i, seed in zip(index, seeds, strict=True)]), index


def wants_pca_projection(config: ImageTrainConfig) -> bool:
    """Whether ``config`` asks for the PCA start of the projection (``auto``: when fine-tuning a checkpoint)."""
    return config.projection_init == "pca" or (config.projection_init == "auto" and config.checkpoint is not None)


def fit_image_encoder(encoder: nn.Module, images: Sequence[Image.Image], codes: np.ndarray, *,
                      params: ImagePreprocessing, config: ImageTrainConfig, device: torch.device,
                      validation: tuple[Sequence[Image.Image], Sequence[str]] | None = None,
                      heldout: tuple[Sequence[Image.Image], Sequence[str]] | None = None,
                      ) -> tuple[nn.Module, FitResult]:
    """Train ``encoder`` (on ``device``) on images with (N,) class ``codes``; returns (objective, result).

    Under torchrun each rank trains on its slice of every global batch (``training.engine.distributed``).
    ``validation`` = (images, labels) of validation classes, scored by MAP@R after each epoch (selects the
    best epoch); ``heldout`` = (images, labels) of held-out classes, scored after each epoch for the curves only.
    """
    num_classes = int(codes.max()) + 1
    objective = make_objective(
        config.objective, num_classes, config.embedding_dim, config.objective_params, seed=config.seed,
        centres=(lambda: class_centres(embed_images(encoder, images, params, device=device), codes))
        if config.uses_centre_init else None).to(device)
    rng = np.random.default_rng(config.seed)
    aug = Augmentation() if config.augment else None
    labels = torch.from_numpy(codes)
    sampler = resolve_sampler(config.sampler, config.objective)

    def epoch_order(generator: np.random.Generator) -> list[np.ndarray]:
        return epoch_batches(sampler, codes, batch_size=config.batch_size, samples_per_class=config.samples_per_class,
                             rng=generator, shuffled=lambda: shuffled_batches(len(images), batch_size=config.batch_size,
                                                                               rng=generator))

    def batches(epoch: int) -> Iterator[Batch]:
        for index in epoch_order(rng):
            if not distributed.keep_batch(index):
                continue
            pixels, index = view_batch(images, index, params, aug, rng)
            yield pixels.to(device), labels[index].to(device)

    def score_on(data: tuple[Sequence[Image.Image], Sequence[str]]) -> Callable[[], float]:
        return lambda: map_at_r(embed_images(encoder, data[0], params, device=device), data[1])

    freeze = config.freeze_batchnorm if config.freeze_batchnorm is not None else config.checkpoint is not None
    result = fit(encoder, objective, batches=batches, embed=encoder, config=config,
                 steps_per_epoch=len(epoch_order(np.random.default_rng(0))),
                 validate=score_on(validation) if validation is not None else None, freeze_batchnorm=freeze,
                 rng=rng, monitor=score_on(heldout) if heldout is not None else None)
    return objective, result
