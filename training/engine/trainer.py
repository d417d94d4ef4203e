"""The state of one ``fit`` (see ``training.engine.loop``): one step at a time, the end of each epoch, checkpoints.

``Trainer`` reads its knobs from a ``TrainConfig`` (validated when it was made) and takes the schedules and
AdamW from ``training.engine.optimiser``, the precision and the divergence guard from
``training.engine.precision``, the data-parallel collectives from ``training.engine.distributed``.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from arcsearch.training.engine import checkpoint, distributed
from arcsearch.training.engine.optimiser import MIN_LR_FRACTION, get_lr, get_margin_fraction, make_optimiser
from arcsearch.training.engine.precision import DivergenceGuard, make_scaler
from arcsearch.training.engine.results import Batch, FitResult
from arcsearch.training.engine.step import Embedding, training_model
from arcsearch.training.objectives.base import Objective

if TYPE_CHECKING:
    from arcsearch.training.config import TrainConfig

logger = logging.getLogger(__name__)

def set_train_mode(encoder: nn.Module, objective: nn.Module, *, freeze_batchnorm: bool) -> None:
    """Train mode; with ``freeze_batchnorm`` BatchNorm layers keep their running statistics (eval mode),
    which is what small batches of a fine-tuned pretrained backbone need."""
    encoder.train()
    objective.train()
    if freeze_batchnorm:
        for module in encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


# the config fields a run's trajectory depends on: a checkpoint records them, a resume compares them
TRAJECTORY_FIELDS = ("epochs", "lr", "head_lr", "weight_decay", "head_weight_decay", "lr_schedule",
                     "warmup_fraction", "grad_clip", "margin_warmup_fraction", "precision")


class Trainer:
    """The state of one ``fit``: takes one step at a time, closes epochs, writes and reads checkpoints.

    Trains on the device of ``encoder``'s parameters; ``config`` was validated when it was made (its
    precision against its device), so nothing here checks it again.
    """

    def __init__(self, encoder: nn.Module, objective: Objective, *, embed: Callable[[Any], torch.Tensor],
                 config: TrainConfig, steps_per_epoch: int, freeze_batchnorm: bool) -> None:
        self.encoder, self.objective, self.config = encoder, objective, config
        self.freeze_batchnorm = freeze_batchnorm
        self.device = next(encoder.parameters()).device
        self.optimiser = make_optimiser(encoder, objective, lr=config.lr, head_lr=config.head_lr,
                                        weight_decay=config.weight_decay, head_weight_decay=config.head_weight_decay)
        self.params = [p for group in self.optimiser.param_groups for p in group["params"]]
        self.scaler = make_scaler(config.precision, self.device)
        self.guard = DivergenceGuard(scaled=self.scaler is not None)
        self.sharded_objective = bool(getattr(objective, "handles_distribution", False))
        self.model = training_model(Embedding(encoder, embed, precision=config.precision, device=self.device),
                                     objective, self.device)
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(1, config.epochs * steps_per_epoch)
        self.warmup_steps = int(config.warmup_fraction * self.total_steps)
        self.margin_warmup_steps = int(config.margin_warmup_fraction * self.total_steps)
        self.result = FitResult()
        self.epoch, self.position, self.hits, self.seen = 0, 0, 0, 0  # position: steps done in this epoch
        self.epoch_rng: dict[str, Any] | None = None  # the batch generator's state at the start of the epoch
        # {"score", "epoch", "encoder", "head"} of the best validation ("head": the objective's state, a
        # checkpoint key kept from earlier versions so that their checkpoints still resume)
        self.best: dict[str, Any] | None = None
        self.seconds_before, self.started = 0.0, time.perf_counter()

    # --- one step -------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Training seconds so far (before a resume included), the largest over ranks."""
        return distributed.all_max(self.seconds_before + time.perf_counter() - self.started, self.device)

    def out_of_time(self) -> bool:
        budget = self.config.max_train_seconds
        return bool(budget) and self.elapsed() >= budget

    def schedule(self) -> None:
        """Learning rates and margin share for the next step: progress in steps or, under a time budget,
        in time, whichever is further along."""
        progress, budget = self.result.steps, self.config.max_train_seconds
        if budget:
            progress = max(progress, int(self.total_steps * self.elapsed() / budget))
        for group in self.optimiser.param_groups:
            group["lr"] = get_lr(progress, max_lr=group["peak_lr"], warmup_steps=self.warmup_steps,
                                 total_steps=self.total_steps, min_lr=group["peak_lr"] * MIN_LR_FRACTION,
                                 schedule=self.config.lr_schedule)
        self.objective.margin_fraction = get_margin_fraction(progress, warmup_steps=self.margin_warmup_steps)

    def global_loss(self, loss: torch.Tensor, logits: torch.Tensor | None,
                    labels: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(the loss over the global batch, the local loss to backpropagate); counts head accuracy.

        Across ranks the local mean losses are weighted by their share of the global batch (times the
        number of ranks, which DDP's gradient averaging divides out), so uneven slices still give the
        gradient of the global mean. An objective that handles distribution gives the global loss already.
        """
        hits = int((logits.detach().argmax(dim=1) == labels).sum()) if logits is not None else 0
        local = float(loss.detach())
        if not distributed.is_distributed():
            self.hits, self.seen = self.hits + hits, self.seen + (len(labels) if logits is not None else 0)
            return local, loss
        loss_sum, count, hits = distributed.all_sum([local * len(labels), len(labels), hits], self.device)
        self.hits, self.seen = self.hits + int(hits), self.seen + (int(count) if logits is not None else 0)
        if self.sharded_objective:
            return loss_sum / count, loss
        return loss_sum / count, loss * (len(labels) * distributed.world_size() / count)

    def optimise(self, loss: torch.Tensor, loss_value: float) -> None:
        """Backward, clip, guard, step (through the fp16 scaler where there is one)."""
        self.optimiser.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimiser)
        grad_norm = float(nn.utils.clip_grad_norm_(self.params, self.config.grad_clip))
        self.guard.check_gradients(self.result.steps, loss_value, grad_norm)
        if self.scaler is None:
            self.optimiser.step()
        else:  # skips the update itself when the gradients hold inf/nan
            self.scaler.step(self.optimiser)
            self.scaler.update()

    def step(self, inputs: Any, labels: torch.Tensor) -> None:
        """One optimisation step on one batch (this rank's slice of the global batch)."""
        self.schedule()
        loss, logits = self.model(inputs, labels)
        loss_value, local_loss = self.global_loss(loss, logits, labels)
        self.guard.check_loss(self.result.steps, loss_value)
        self.optimise(local_loss, loss_value)
        self.result.step_losses.append(loss_value)
        self.result.steps += 1
        self.position += 1

    # --- epochs ---------------------------------------------------------------------------------------
    def run_epoch(self, epoch: int, batches: Callable[[int], Iterable[Batch]],
                  rng: np.random.Generator | None) -> bool:
        """Train on one epoch's batches (from where a resumed checkpoint left off); True if out of time."""
        if self.position == 0:  # a fresh epoch, not one resumed part-way
            self.epoch, self.hits, self.seen = epoch, 0, 0
            self.epoch_rng = checkpoint.rng_state(rng) if rng is not None else None
        set_train_mode(self.encoder, self.objective, freeze_batchnorm=self.freeze_batchnorm)
        show = self.config.show_progress and distributed.is_main_process()
        for done, (inputs, labels) in enumerate(tqdm(batches(epoch), total=self.steps_per_epoch,
                                                     desc=f"epoch {epoch + 1}", leave=False, disable=not show)):
            if done < self.position:
                continue  # trained on before the checkpoint; drawn again so that the generator's draws match
            self.step(inputs, labels)
            if self.config.checkpoint_every and self.result.steps % self.config.checkpoint_every == 0:
                self.save()
            if self.out_of_time():
                return True
        return False

    def validate(self, epoch: int, validate: Callable[[], float]) -> float:
        """Rank 0's validation score (on every rank); keeps the weights of the best epoch so far (epoch -1:
        the start, scored before training, which an epoch must beat to be chosen)."""
        score = distributed.broadcast_from_main(validate() if distributed.is_main_process() else 0.0, self.device)
        if epoch < 0:
            self.result.start_validation_score = score
        else:
            self.result.validation_scores.append(score)
        if self.best is None or score > self.best["score"]:
            self.result.best_epoch = epoch
            self.best = {"score": score, "epoch": epoch, "encoder": copy.deepcopy(self.encoder.state_dict()),
                         "head": copy.deepcopy(self.objective.state_dict())}
        return score

    def validate_start(self, validate: Callable[[], float]) -> None:
        """Score the weights training starts from as "epoch 0"; its time is left out of the time budget."""
        started = time.perf_counter()
        score = self.validate(-1, validate)
        self.started += time.perf_counter() - started
        if distributed.is_main_process():
            logger.info("epoch 0 (the start): validation MAP@R %.4f", score)

    def watch(self, monitor: Callable[[], float]) -> float:
        """Rank 0's ``monitor()`` score, recorded only; its time is left out of the time budget."""
        started = time.perf_counter()
        score = distributed.broadcast_from_main(monitor() if distributed.is_main_process() else 0.0, self.device)
        self.started += time.perf_counter() - started
        self.result.monitor_scores.append(score)
        return score

    def end_epoch(self, epoch: int, validate: Callable[[], float] | None, out_of_time: bool,
                  monitor: Callable[[], float] | None = None) -> str | None:
        """Record the epoch's mean loss, head accuracy, validation and monitor scores; the reason to stop, if any."""
        losses = self.result.step_losses[len(self.result.step_losses) - self.position:]
        self.result.epoch_losses.append(sum(losses) / max(1, len(losses)))
        message = f"epoch {epoch + 1}/{self.config.epochs}: loss {self.result.epoch_losses[-1]:.4f}"
        if self.seen:
            self.result.epoch_head_accuracy.append(self.hits / self.seen)
            message += f", head accuracy {self.hits / self.seen:.3f}"
        if validate is not None:
            message += f", validation MAP@R {self.validate(epoch, validate):.4f}"
        if monitor is not None:
            message += f", monitored MAP@R {self.watch(monitor):.4f}"
        if distributed.is_main_process():
            logger.info("%s (%.0f s)", message, self.seconds_before + time.perf_counter() - self.started)
        self.position = 0
        patience = self.config.patience  # stops only where there is validation (a best epoch)
        if out_of_time:
            return f"time budget of {self.config.max_train_seconds} s spent"
        if patience is not None and self.result.best_epoch is not None and epoch - self.result.best_epoch >= patience:
            return f"no validation gain for {patience} epochs"
        return None

    def finish(self) -> FitResult:
        """Restore the best validation weights (if validated), eval mode; the result."""
        self.result.train_seconds = self.seconds_before + time.perf_counter() - self.started
        if self.best is not None:
            self.encoder.load_state_dict(self.best["encoder"])
            self.objective.load_state_dict(self.best["head"])
            if distributed.is_main_process():
                which = "the start (epoch 0)" if self.best["epoch"] < 0 else f"epoch {self.best['epoch'] + 1}"
                logger.info("restored the weights of %s (validation MAP@R %.4f)", which, self.best["score"])
        self.encoder.eval()
        self.objective.eval()
        return self.result

    # --- checkpoints ----------------------------------------------------------------------------------
    def checkpoint_file(self) -> Path:
        """Rank 0's file, or each rank's own when the objective's state differs between ranks."""
        per_rank = self.sharded_objective and distributed.is_distributed()
        return checkpoint.checkpoint_path(self.config.checkpoint_dir, rank=distributed.rank() if per_rank else None)

    def trajectory(self) -> dict[str, Any]:
        """The settings the run's trajectory depends on: ``TRAJECTORY_FIELDS`` and the schedule's floor."""
        return {**{name: getattr(self.config, name) for name in TRAJECTORY_FIELDS}, "min_lr_fraction": MIN_LR_FRACTION}

    def state(self) -> dict[str, Any]:
        """Everything ``restore`` needs to continue exactly (tensors and plain containers only). The keys are
        those of earlier versions ("head": the objective, "optimizer"), so that their checkpoints resume."""
        self.result.train_seconds = self.seconds_before + time.perf_counter() - self.started
        return {"step": self.result.steps, "epoch": self.epoch, "position": self.position, "hits": self.hits,
                "seen": self.seen, "encoder": self.encoder.state_dict(), "head": self.objective.state_dict(),
                "optimizer": self.optimiser.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "epoch_rng": self.epoch_rng, "torch_rng": checkpoint.torch_rng_states(), "result": asdict(self.result),
                "best": self.best, "skipped_steps": self.guard.skipped, "steps_per_epoch": self.steps_per_epoch,
                "settings": self.trajectory()}

    def save(self) -> None:
        """Write a checkpoint (rank 0, or every rank for a sharded objective); the others wait."""
        if self.sharded_objective or distributed.is_main_process():
            checkpoint.save_checkpoint(self.checkpoint_file(), self.state())
        distributed.barrier()

    def restore(self, rng: np.random.Generator | None) -> None:
        """Continue from the checkpoint file: weights, optimiser, counters, result, RNGs."""
        path = self.checkpoint_file()
        state = checkpoint.load_checkpoint(path)
        now = self.trajectory()
        changed = {name: (value, now.get(name)) for name, value in state["settings"].items() if now.get(name) != value}
        if changed or state["steps_per_epoch"] != self.steps_per_epoch:
            logger.warning("resuming %s with other settings than it was written with (%s, steps per epoch %d -> "
                           "%d): the run will not match an uninterrupted one", path, changed,
                           state["steps_per_epoch"], self.steps_per_epoch)
        self.encoder.load_state_dict(state["encoder"])
        self.objective.load_state_dict(state["head"])
        self.optimiser.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.result = FitResult(**state["result"])
        self.seconds_before, self.started = self.result.train_seconds, time.perf_counter()
        self.epoch, self.position = state["epoch"], state["position"]
        self.hits, self.seen = state["hits"], state["seen"]
        self.best, self.guard.skipped, self.epoch_rng = state["best"], state["skipped_steps"], state["epoch_rng"]
        if rng is not None:
            if self.epoch_rng is None:
                raise ValueError(f"{path} holds no batch generator state, but fit was given a generator")
            checkpoint.set_rng_state(rng, self.epoch_rng)
        checkpoint.set_torch_rng_states(state["torch_rng"])
        if distributed.is_main_process():
            logger.info("resumed from %s at step %d (epoch %d, %d steps into it)", path, self.result.steps,
                        self.epoch + 1, self.position)
