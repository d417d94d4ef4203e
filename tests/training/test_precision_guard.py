"""Mixed precision on cpu (bf16 autocast, fp16 refused) and the guard that stops a diverging run."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from arcsearch.training.config import ConfigError, TrainConfig
from arcsearch.training.engine.loop import fit
from arcsearch.training.engine.precision import DivergenceGuard, TrainingDiverged
from arcsearch.training.engine.results import Batch
from arcsearch.training.objectives.base import Objective, ObjectiveOutput
from tests.training.test_resume import arcface_objective, make_batches, make_encoder, steps_per_epoch, train_config


def finite(*modules: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for module in modules for p in module.parameters())


def test_a_nan_in_a_batch_stops_training_at_that_step() -> None:
    encoder, objective, rng = make_encoder(dropout=0.0), arcface_objective(), np.random.default_rng(0)
    clean = make_batches(rng)

    def batches(epoch: int) -> Iterator[Batch]:
        for k, (inputs, labels) in enumerate(clean(epoch)):
            if (epoch, k) == (1, 2):
                inputs = inputs.clone()
                inputs[0, 0] = math.nan
            yield inputs, labels

    with pytest.raises(TrainingDiverged) as caught:
        fit(encoder, objective, batches=batches, embed=encoder, config=train_config(epochs=3),
            steps_per_epoch=steps_per_epoch())
    step = steps_per_epoch() + 2
    assert caught.value.step == step and math.isnan(caught.value.loss)
    message = str(caught.value)
    assert f"step {step}" in message and "loss nan" in message
    for advice in ("--lr", "--head-lr", "--scale", "--margin-warmup-fraction", "--precision fp32"):
        assert advice in message
    assert finite(encoder, objective), "the weights must not have been stepped on the nan gradients"


class SqrtAtZero(Objective):
    """A finite loss (0) whose gradient is nan: d sqrt(u)/du at u = 0 is inf, times du/dx = 0."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> ObjectiveOutput:
        return ObjectiveOutput((embeddings - embeddings.detach()).pow(2).sum().sqrt())


def test_non_finite_gradients_stop_training_although_the_loss_is_finite() -> None:
    encoder, rng = make_encoder(dropout=0.0), np.random.default_rng(0)
    with pytest.raises(TrainingDiverged, match="step 0: the gradient norm is nan") as caught:
        fit(encoder, SqrtAtZero(), batches=make_batches(rng), embed=encoder, config=train_config(epochs=1),
            steps_per_epoch=steps_per_epoch())
    assert caught.value.loss == 0.0 and finite(encoder)


def test_an_absurd_learning_rate_is_caught() -> None:
    encoder, objective, rng = make_encoder(dropout=0.0), arcface_objective(), np.random.default_rng(0)
    with pytest.raises(TrainingDiverged) as caught:
        fit(encoder, objective, batches=make_batches(rng), embed=encoder,
            config=train_config(epochs=5, lr=1e6, head_lr=1e6, warmup_fraction=0.0), steps_per_epoch=steps_per_epoch())
    assert 0 < caught.value.step < 5 * steps_per_epoch() and finite(encoder, objective)


def test_guard_tolerates_skipped_fp16_steps_but_not_a_run_of_them() -> None:
    unscaled = DivergenceGuard(scaled=False)
    with pytest.raises(TrainingDiverged, match="gradient norm is inf"):
        unscaled.check_gradients(3, 1.5, math.inf)
    scaled = DivergenceGuard(scaled=True, max_skipped=3)
    for norm in (math.inf, math.nan, 2.0, math.inf, math.inf):  # the finite step resets the count
        scaled.check_gradients(0, 1.0, norm)
    with pytest.raises(TrainingDiverged, match="3 steps in a row"):
        scaled.check_gradients(5, 1.0, math.inf)
    with pytest.raises(TrainingDiverged, match="the loss is not finite"):
        scaled.check_loss(6, math.inf)


def test_bf16_autocast_on_cpu_trains_and_the_objective_sees_float32() -> None:
    encoder, objective, rng = make_encoder(dropout=0.0), arcface_objective(), np.random.default_rng(0)
    encoder_dtypes: set[torch.dtype] = set()
    objective_dtypes: set[torch.dtype] = set()
    encoder[0].register_forward_hook(lambda module, args, out: encoder_dtypes.add(out.dtype))
    objective.register_forward_pre_hook(lambda module, args: objective_dtypes.add(args[0].dtype))
    result = fit(encoder, objective, batches=make_batches(rng), embed=encoder,
                 config=train_config(epochs=6, precision="bf16"), steps_per_epoch=steps_per_epoch())
    assert encoder_dtypes == {torch.bfloat16} and objective_dtypes == {torch.float32}
    assert result.epoch_losses[-1] < 0.5 * result.epoch_losses[0], result.epoch_losses
    assert all(p.dtype == torch.float32 for p in encoder.parameters())


def test_fp16_is_refused_where_the_run_would_train_on_cpu() -> None:
    """The config, checked once, refuses it; ``auto`` counts as the device the run resolves it to."""
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        TrainConfig(precision="fp16", device="cpu")
    if torch.cuda.is_available():
        assert TrainConfig(precision="fp16").precision == "fp16"
    else:
        with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
            TrainConfig(precision="fp16")
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainConfig(precision="fp8")
