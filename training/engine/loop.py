"""The training loop shared by images and texts: encoder + objective, AdamW, warmup + cosine decay.

Read top to bottom: ``fit`` here, then ``training.engine.trainer.Trainer`` (one step, one epoch's end,
checkpoints); the schedules and AdamW are in ``training.engine.optimiser``. The loop knows nothing of the
modality: it is given a function that yields (inputs, labels) batches and one that embeds inputs, and it
reads its knobs from a ``training.config.TrainConfig``.

Checkpoints (``checkpoint_every`` steps into ``checkpoint_dir``; ``resume`` to continue) hold everything the
run depends on, so that on cpu a run interrupted and resumed ends with bit-for-bit the weights and losses of
an uninterrupted one: weights, optimiser (and fp16 scaler) state, step, epoch and position in it, the
numpy generator's state at the start of the epoch (the epoch's batches are drawn again and the ones
already trained on skipped), torch's RNG states, the result so far and the best validation state.
A time budget (``max_train_seconds``) makes a run non-deterministic: the schedule then follows the
clock, and the time before an interruption counts against the budget.

Precision, the divergence guard and data-parallel training: ``training.engine.precision``,
``training.engine.distributed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from arcsearch.training.engine.results import Batch, FitResult
from arcsearch.training.engine.trainer import Trainer
from arcsearch.training.objectives.base import Objective

if TYPE_CHECKING:
    from arcsearch.training.config import TrainConfig


def fit(encoder: nn.Module, objective: Objective, *, batches: Callable[[int], Iterable[Batch]],
        embed: Callable[[Any], torch.Tensor], config: TrainConfig, steps_per_epoch: int,
        validate: Callable[[], float] | None = None, freeze_batchnorm: bool = False,
        rng: np.random.Generator | None = None, monitor: Callable[[], float] | None = None) -> FitResult:
    """Train ``encoder`` and the ``objective`` (its class centres, if any) on the objective's loss.

    ``batches(epoch)`` yields one epoch of batches; ``embed(inputs)`` gives (N, D) embeddings.
    ``rng`` is the generator ``batches`` draws from (if any): checkpoints keep its state at the start of
    each epoch so that a resumed epoch draws the same batches. The learning rate follows ``get_lr`` on
    progress measured in steps or, under a time budget, in time, whichever is further along. With
    ``validate`` (higher is better) the start is scored first ("epoch 0", ``FitResult.start_validation_score``)
    and the best of the start and the epochs (an epoch must score higher) has its encoder and objective
    weights restored at the end; ``config.patience`` epochs without a better score stop training.
    ``monitor()`` (e.g. held-out MAP@R) is recorded after every epoch for the curves and never selects
    anything; its time does not count against the time budget. Raises
    ``training.engine.precision.TrainingDiverged`` when the loss or gradients become non-finite. Under
    torchrun (``training.engine.distributed``) every rank calls ``fit`` with its slice of each global batch.
    """
    trainer = Trainer(encoder, objective, embed=embed, config=config, steps_per_epoch=steps_per_epoch,
                      freeze_batchnorm=freeze_batchnorm)
    if config.resume:
        trainer.restore(rng)  # the start's score and weights come back with the checkpoint
    elif validate is not None:
        trainer.validate_start(validate)
    for epoch in range(trainer.epoch, config.epochs):
        stop_reason = trainer.end_epoch(epoch, validate, trainer.run_epoch(epoch, batches, rng), monitor)
        if stop_reason is not None:
            trainer.result.stop_reason = stop_reason
            break
    return trainer.finish()
