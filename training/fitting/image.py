"""Fitting an image encoder with a training objective on image files streamed from disk
(``training.data.streaming``; the loop is ``training.engine.loop.fit``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.training.config import ImageTrainConfig
from arcsearch.training.data.augment import augmentation_for
from arcsearch.training.data.samplers import epoch_batches, resolve_sampler
from arcsearch.training.data.splits import shuffled_batches
from arcsearch.training.data.streaming import ImageFiles, PlannedBatches, image_batches, image_loader
from arcsearch.training.engine.loop import fit
from arcsearch.training.engine.results import Batch, FitResult
from arcsearch.training.evaluation.baselines import backbone_baseline
from arcsearch.training.evaluation.metrics import map_at_r
from arcsearch.training.evaluation.scoring import embed_files, embedding_batches
from arcsearch.training.objectives.registry import class_centres, make_objective

logger = logging.getLogger(__name__)


@torch.no_grad()
def init_projection_pca(encoder: nn.Module, paths: Sequence[Path], *, params: ImagePreprocessing,
                        device: torch.device, workers: int = 0) -> None:
    """Set the encoder's linear ``projection`` to the top principal components of its pooled backbone
    features on the image files ``paths`` (mean-centred), so that training starts from the pretrained
    geometry rather than a random projection. The (F, F) scatter of the features is summed a batch at a
    time, so no more than one batch of images or features is held. Components beyond the number of images
    keep their random init."""
    count, total, scatter = 0, 0.0, 0.0  # becoming (F,) and (F, F) float64 sums
    for features, _ in embedding_batches(backbone_baseline(encoder), image_batches(
            paths, params, workers=workers, device=device), device=device, normalise=False):
        batch = torch.from_numpy(features).double()  # (B, F)
        count, total, scatter = count + len(batch), total + batch.sum(dim=0), scatter + batch.T @ batch
    mean = total / count
    _, vectors = torch.linalg.eigh(scatter - count * torch.outer(mean, mean))  # ascending eigenvalues
    components = vectors.flip(1).T  # (F, F), the largest variance first
    k = min(encoder.projection.out_features, components.shape[0], count)
    weight = encoder.projection.weight
    weight[:k] = components[:k].to(weight)
    encoder.projection.bias.copy_(-(weight @ mean.to(weight)))


def wants_pca_projection(config: ImageTrainConfig) -> bool:
    """Whether ``config`` asks for the PCA start of the projection (``auto``: when fine-tuning a checkpoint)."""
    return config.projection_init == "pca" or (config.projection_init == "auto" and config.checkpoint is not None)


def fit_image_encoder(encoder: nn.Module, paths: Sequence[Path], codes: np.ndarray, *,
                      params: ImagePreprocessing, config: ImageTrainConfig, device: torch.device,
                      validation: tuple[Sequence[Path], Sequence[str]] | None = None,
                      heldout: tuple[Sequence[Path], Sequence[str]] | None = None,
                      ) -> tuple[nn.Module, FitResult]:
    """Train ``encoder`` (on ``device``) on the image files ``paths`` with (N,) class ``codes``; returns
    (objective, result). ``config.workers`` processes decode and augment the images as the steps need them.

    Under torchrun each rank trains on its slice of every global batch (``training.engine.distributed``).
    ``validation`` = (paths, labels) of validation classes, scored by MAP@R after each epoch (selects the
    best epoch); ``heldout`` = (paths, labels) of held-out classes, scored after each epoch for the curves only.
    """
    workers = config.workers

    def centres() -> torch.Tensor:
        embedded = embedding_batches(encoder, image_batches(paths, params, workers=workers, device=device),
                                     device=device)
        return class_centres(((vectors, codes[positions]) for vectors, positions in embedded),
                             num_classes=int(codes.max()) + 1)

    objective = make_objective(config.objective, int(codes.max()) + 1, config.embedding_dim, config.objective_params,
                               seed=config.seed, centres=centres if config.uses_centre_init else None).to(device)
    rng = np.random.default_rng(config.seed)
    aug = augmentation_for(config.augment, flip=config.flip)  # "auto" was resolved to a policy before
    labels = torch.from_numpy(codes)
    sampler = resolve_sampler(config.sampler, config.objective)
    planner = PlannedBatches(augmented=aug is not None)
    loader = image_loader(ImageFiles(paths, params, aug=aug), workers=workers, device=device, seed=config.seed,
                          batch_sampler=planner)

    def epoch_order(generator: np.random.Generator) -> list[np.ndarray]:
        return epoch_batches(sampler, codes, batch_size=config.batch_size, samples_per_class=config.samples_per_class,
                             rng=generator, shuffled=lambda: shuffled_batches(len(paths), batch_size=config.batch_size,
                                                                               rng=generator))

    def batches(epoch: int) -> Iterator[Batch]:
        planner.start(epoch_order(rng), rng)
        for pixels, positions in loader:
            yield pixels.to(device, non_blocking=True), labels[positions].to(device, non_blocking=True)

    def score_on(data: tuple[Sequence[Path], Sequence[str]]) -> Callable[[], float]:
        return lambda: map_at_r(embed_files(encoder, data[0], params, workers=workers, device=device), data[1])

    freeze = config.freeze_batchnorm if config.freeze_batchnorm is not None else config.checkpoint is not None
    result = fit(encoder, objective, batches=batches, embed=encoder, config=config,
                 steps_per_epoch=len(epoch_order(np.random.default_rng(0))),
                 validate=score_on(validation) if validation is not None else None, freeze_batchnorm=freeze,
                 rng=rng, monitor=score_on(heldout) if heldout is not None else None)
    return objective, result
