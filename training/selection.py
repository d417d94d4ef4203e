"""Model selection: never export worse than the start without saying so.

A run validates (``training.data.validation``) the weights it starts from ("epoch 0": the pretrained
encoder, or the untrained one) and every epoch; the best is exported. With few training classes it also
tries gentler ways to fine-tune, and for images with ``augment="auto"`` every augmentation policy
(``training.remedies``), each a candidate scored the same way. ``selection_summary`` says in the report
which candidate and which epoch won and by how much; a run that cannot beat its start exports the start and
says so, or, with ``require_gain``, exports nothing (``NoGainError``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from arcsearch.training.data.augment import AUTO_POLICIES
from arcsearch.training.remedies import REMEDY_CANDIDATES, Candidate, Choice, Chooser, FitOne, check_remedies

if TYPE_CHECKING:
    from arcsearch.training.config import TrainConfig
    from arcsearch.training.data.validation import TrainingSplit
    from arcsearch.training.engine.results import FitResult

logger = logging.getLogger(__name__)


class NoGainError(RuntimeError):
    """``require_gain`` was asked for and fine-tuning did not beat the start on validation."""


def remedy_names(config: TrainConfig, *, num_train_classes: int, validated: bool) -> tuple[tuple[str, ...], str]:
    """The remedies a run tries and why, in words: ``auto`` only under ``remedy_below_classes`` training
    classes; none without validation data (nothing to choose on)."""
    names = check_remedies(config.remedies)
    if not names:
        return (), "remedies off (--remedies none)"
    if not validated:
        return (), "no validation data to choose a remedy on"
    if config.remedies == "auto" and num_train_classes >= config.remedy_below_classes:
        return (), (f"{num_train_classes} training classes, not under {config.remedy_below_classes}: plain "
                    "fine-tuning only")
    return names, (f"{num_train_classes} training classes: trying {', '.join(names)} (each one more training run "
                   f"of {config.epochs} epochs)")


def fit_selected(encoder: nn.Module, fit_one: FitOne, config: TrainConfig, *, num_train_classes: int,
                 validated: bool) -> tuple[Choice, dict[str, Any]]:
    """Train the candidates this run asks for (see the module's docstring) from ``encoder``'s weights now and
    leave the winner's weights in ``encoder``; returns (the winner, {"augment": ..., "remedies": ...} for the
    report). Without validation data, or with nothing to choose, it is one plain run."""
    chooser = Chooser(encoder, fit_one, config)
    info: dict[str, Any] = {}
    if getattr(config, "augment", None) == "auto":
        policies = AUTO_POLICIES if validated else ("default",)
        logger.info("augmentation auto: training with %s, chosen on validation", ", ".join(policies))
        for policy in policies:
            chooser.try_candidate(Candidate(f"augment={policy}", {"augment": policy}))
        info["augment"] = {"tried": list(policies), "chosen": chooser.finish().changes["augment"],
                           "trials": list(chooser.trials)}
    else:
        chooser.try_candidate(Candidate("plain"))
    names, reason = remedy_names(config, num_train_classes=num_train_classes, validated=validated)
    logger.info("remedies: %s", reason)
    base = dict(chooser.best.changes) if chooser.best is not None else {}
    for name in names:
        chooser.try_candidate(REMEDY_CANDIDATES[name](config), base_changes=base)
    choice = chooser.finish()
    info["remedies"] = {"tried": list(names), "reason": reason, "chosen": choice.name if names else None,
                        "trials": chooser.trials}
    return choice, info


def _verdict(start: float, best: float, best_epoch: int, *, start_name: str, winner: str) -> tuple[bool, str]:
    gain = best - start
    if best_epoch > 0:
        return True, (f"fine-tuning ({winner}, epoch {best_epoch}) beat {start_name} on validation: MAP@R "
                      f"{best:.4f} vs {start:.4f} ({gain:+.4f})")
    return False, (f"fine-tuning did not beat {start_name} on validation (MAP@R {start:.4f}; best fine-tuned "
                   f"epoch {best:.4f}, {gain:+.4f}): {start_name} is what is kept")


def selection_summary(result: FitResult, *, split: TrainingSplit, start_name: str, winner: str,
                      candidates: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's ``selection``: what validated, every epoch's score (epoch 0: the start), the chosen one,
    its gain over the start and the verdict in words; ``gained`` False when the start was kept."""
    summary: dict[str, Any] = {"validation": split.summary(), "start": start_name, "candidate": winner,
                               **(candidates or {})}
    start = result.start_validation_score
    if start is None:
        last = len(result.epoch_losses)
        summary.update(chosen_epoch=last, gained=None, verdict=f"not validated ({split.note}): epoch {last} kept")
        return summary
    epochs = [{"epoch": 0, "validation_map_at_r": start}]
    epochs += [{"epoch": i + 1, "validation_map_at_r": s} for i, s in enumerate(result.validation_scores)]
    chosen = 0 if result.best_epoch is None else result.best_epoch + 1
    trained_best = max(result.validation_scores, default=start)
    gained, verdict = _verdict(start, max(start, trained_best) if chosen else trained_best, chosen,
                               start_name=start_name, winner=winner)
    summary.update(epochs=epochs, chosen_epoch=chosen, start_validation_map_at_r=start,
                   validation_map_at_r=max(start, trained_best), gain_over_start=trained_best - start,
                   gained=gained, verdict=verdict)
    return summary


def _kept_back(summary: dict[str, Any], config: TrainConfig) -> bool:
    """Whether ``require_gain`` keeps the bundle back: the start was kept."""
    return config.require_gain and summary.get("gained") is not True


def gate(summary: dict[str, Any], config: TrainConfig, *, export: Callable[[], None] | None) -> None:
    """Export unless ``config.require_gain`` and the start was kept; ``summary["exported"]`` says which."""
    if _kept_back(summary, config):
        summary["exported"] = False
        return
    if export is not None:
        export()
    summary["exported"] = export is not None


def refuse_if_no_gain(summary: dict[str, Any], config: TrainConfig) -> None:
    """NoGainError (after the report is written) when ``require_gain`` kept the bundle back."""
    if _kept_back(summary, config):
        raise NoGainError(f"--require-gain: {summary['verdict']}; nothing exported")
