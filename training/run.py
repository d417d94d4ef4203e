"""Public entry points the CLI calls: train and evaluate image or text embedders end to end.

``train_images`` / ``train_texts``: split classes, score baselines on the held-out classes, fine-tune
with the training objective, score the fine-tuned encoder, export the headless bundle to ``config.out_dir``
and write the report to ``report_path(config.out_dir)``. (``training.evaluation.exported`` scores an
exported bundle.) Images are never all decoded at once: training, validation, baselines, the PCA start and
the final scoring read them from their files a batch at a time (``training.data.streaming``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arcsearch.index.bundle import ImagePreprocessing, write_json_atomic
from arcsearch.index.corpus import read_corpus, require_labels
from arcsearch.index.embedder import resolve_device
from arcsearch.training.backbones import build_image_encoder
from arcsearch.training.config import ImageTrainConfig, TextTrainConfig
from arcsearch.training.data.closed_set import split_closed_set
from arcsearch.training.data.splits import label_codes
from arcsearch.training.data.validation import TrainingSplit, plan_split
from arcsearch.training.engine import distributed
from arcsearch.training.evaluation.baselines import backbone_baseline, raw_pixel_embeddings, tfidf_embeddings
from arcsearch.training.evaluation.closed_set import ClosedSet, closed_set_table
from arcsearch.training.evaluation.figures import write_run_figures
from arcsearch.training.evaluation.mislabelled import mislabelled_report
from arcsearch.training.evaluation.scoring import embed_files, embed_texts, format_table, score
from arcsearch.training.export import export_image_embedder, export_text_embedder
from arcsearch.training.fitting.image import fit_image_encoder, init_projection_pca, wants_pca_projection
from arcsearch.training.fitting.text import fit_text_encoder, load_sentence_model
from arcsearch.training.fitting.text_policy import embed_with_policy, resolve_text_policy
from arcsearch.training.objectives.subcenter import SubCenterClassifier
from arcsearch.training.selection import fit_selected, gate, refuse_if_no_gain, selection_summary

logger = logging.getLogger(__name__)


def report_path(out_dir: Path) -> Path:
    """Where a training run writes its JSON report: beside the bundle, ``<out_dir>_report.json``."""
    return Path(out_dir).parent / f"{Path(out_dir).name}_report.json"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _pick(seq: list, index: np.ndarray) -> list:
    return [seq[i] for i in index]


def _finish(report: dict[str, Any], *, modality: str, out_dir: Path) -> dict[str, Any]:
    """Log the table, write the report JSON; returns the report."""
    logger.info("%s retrieval on %d held-out classes:\n%s", modality, len(report["heldout_classes"]),
                format_table(report["methods"]))
    closed = report.get("closed_set") or {}
    if closed.get("methods"):
        logger.info("%s retrieval among %d held-out items of %d training classes (closed set, leave-one-out):\n%s",
                    modality, closed["num_items"], closed["num_classes"], closed_set_table(closed["methods"]))
    path = report_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, report)
    selection = report["selection"]
    logger.info("model selection: %s", selection["verdict"])
    logger.info("report written to %s, bundle %s", path,
                f"to {out_dir}" if selection.get("exported") else "not exported")
    return report


def _split(labels: list[str], config: ImageTrainConfig | TextTrainConfig) -> TrainingSplit:
    return plan_split(labels, holdout_fraction=config.holdout_fraction, validation_fraction=config.validation_fraction,
                      min_validation_classes=config.min_validation_classes, seed=config.seed)


def _new_report(config: ImageTrainConfig | TextTrainConfig, split: TrainingSplit, modality: str) -> dict[str, Any]:
    classes = split.classes
    return {"modality": modality, "config": config.to_dict(), "train_classes": list(classes.train),
            "validation_classes": list(classes.validation), "heldout_classes": list(classes.holdout),
            "methods": {}}


def _fit_summary(result: Any) -> dict[str, Any]:
    return {"train_seconds": result.train_seconds, "steps": result.steps, "epoch_losses": result.epoch_losses,
            "epoch_head_accuracy": result.epoch_head_accuracy,
            "validation_map_at_r": result.validation_scores, "heldout_map_at_r": result.monitor_scores,
            # 1-based, as logged; None without validation classes
            "best_epoch": None if result.best_epoch is None else result.best_epoch + 1,
            "stop_reason": result.stop_reason}


def _closed_set(config: ImageTrainConfig | TextTrainConfig, train: np.ndarray, *, inputs: list, labels: list[str],
                items: list) -> tuple[np.ndarray, ClosedSet]:
    """Take the closed set (``training.data.closed_set``) out of the ``train`` positions: (the (K,) positions
    left to train on, the closed set's inputs, labels and item ids to score methods on)."""
    train, closed = split_closed_set(labels, train, fraction=config.closed_set_fraction, seed=config.seed)
    return train, ClosedSet(_pick(inputs, closed), _pick(labels, closed), _pick([it.item_id for it in items], closed),
                            fraction=config.closed_set_fraction)


def _conclude(report: dict[str, Any], config: ImageTrainConfig | TextTrainConfig, *, objective: Any, result: Any,
              embed: Callable[[list], np.ndarray], train: tuple[list, np.ndarray, list[str], list[str]],
              held: tuple[list, list[str]], heldout: dict[str, np.ndarray], closed: ClosedSet,
              export: Callable[[], None] | None, modality: str, selection: dict[str, Any]) -> dict[str, Any]:
    """After fitting, on rank 0 only: list likely mislabelled items (sub-center ArcFace), score the held-out
    classes and the closed set, ``export`` the bundle (not when ``require_gain`` found no gain: the report is
    written, then ``NoGainError``), write the report. ``embed(inputs)`` gives (N, D) normalised embeddings;
    ``train`` = (inputs, codes, item ids, labels); ``held`` = (inputs, labels); ``selection``:
    ``selection_summary``."""
    report["fit"] = _fit_summary(result)
    report["selection"] = selection
    if not distributed.is_main_process():
        return report
    if isinstance(objective, SubCenterClassifier):
        inputs, codes, ids, labels = train
        report["likely_mislabelled"] = mislabelled_report(objective, embed(inputs), codes, ids, labels)
    if held[1]:
        heldout[f"{config.objective}_finetuned"] = embed(held[0])
        _score_finetuned(report, config, heldout, held[1], result)
    closed.score(f"{config.objective}_finetuned", embed)
    report["closed_set"] = closed.summary()
    gate(selection, config, export=export)
    _finish(report, modality=modality, out_dir=config.out_dir)
    refuse_if_no_gain(selection, config)
    return report


def heldout_path(out_dir: Path) -> Path:
    """Where a training run keeps the fine-tuned held-out embeddings: ``<out_dir>_heldout.npz``
    (``embeddings`` (N, D) float32 L2-normalised, ``labels`` (N,) str)."""
    return Path(out_dir).parent / f"{Path(out_dir).name}_heldout.npz"


def _score_finetuned(report: dict[str, Any], config: ImageTrainConfig | TextTrainConfig,
                     heldout: dict[str, np.ndarray], labels: list[str], result: Any) -> None:
    """Score the fine-tuned encoder's (N, D) held-out embeddings (the last of ``heldout``, method -> vectors)
    into the report, keep them on disk and draw the run's pictures."""
    embeddings = list(heldout.values())[-1]
    report["methods"][f"{config.objective}_finetuned"] = {**score(embeddings, labels, seed=config.seed),
                                                     "train_seconds": result.train_seconds}
    path = heldout_path(config.out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, embeddings=embeddings, labels=np.asarray(labels, dtype=str))
    report["heldout_embeddings"] = str(path)
    report["figures"] = write_run_figures(config.out_dir, objective=config.objective, fit=report["fit"],
                                          heldout=heldout, labels=labels)


def _manifest_training(report: dict[str, Any], source: Path) -> dict[str, Any]:
    return {"data": str(source), "config": report["config"], "fit": report["fit"],
            "heldout_classes": report["heldout_classes"], "train_classes": report["train_classes"],
            "selection": {key: value for key, value in report["selection"].items() if key != "exported"}}


def train_images(config: ImageTrainConfig, *, export: bool = True, baselines: bool = True) -> dict[str, Any]:
    """Fine-tune, evaluate (with ``baselines`` unless told not) on held-out classes and (unless ``export`` is
    False) export an image embedder; returns the report."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    items = read_corpus(config.images_dir, "image")
    labels = require_labels(items)
    split = _split(labels, config)
    report = _new_report(config, split, "image")
    paths = [item.path for item in items]  # decoded a batch at a time wherever they are used, never all at once
    params, workers = ImagePreprocessing(height=config.image_size, width=config.image_size), config.workers
    held, train, val = split.held, split.train, split.validation
    train, closed = _closed_set(config, train, inputs=paths, labels=labels, items=items)
    held_paths, held_labels = _pick(paths, held), _pick(labels, held)
    encoder = build_image_encoder(config.backbone, embedding_dim=config.embedding_dim,
                                  checkpoint=config.checkpoint).to(device)

    def embed(model: torch.nn.Module, inputs: list[Path]) -> np.ndarray:
        return embed_files(model, inputs, params, workers=workers, device=device)

    baseline = "pretrained_backbone" if config.checkpoint is not None else "untrained_backbone"
    heldout: dict[str, np.ndarray] = {}  # method -> (N, D) held-out embeddings, for the pictures
    if held.size and baselines and distributed.is_main_process():
        report["methods"]["raw_pixels"] = score(raw_pixel_embeddings(held_paths, workers=workers), held_labels,
                                                seed=config.seed)
        heldout[baseline] = embed(backbone_baseline(encoder), held_paths)
        report["methods"][baseline] = score(heldout[baseline], held_labels, seed=config.seed)
    if baselines and distributed.is_main_process():
        closed.score("raw_pixels", lambda inputs: raw_pixel_embeddings(inputs, workers=workers))
        closed.score(baseline, lambda inputs: embed(backbone_baseline(encoder), inputs))
    if wants_pca_projection(config):
        init_projection_pca(encoder, _pick(paths, train), params=params, device=device, workers=workers)
        if held.size and baselines and distributed.is_main_process():
            report["methods"]["pretrained_pca_projection"] = score(embed(encoder, held_paths), held_labels,
                                                                   seed=config.seed)
        if baselines and distributed.is_main_process():
            closed.score("pretrained_pca_projection", lambda inputs: embed(encoder, inputs))
    train_codes = label_codes(_pick(labels, train), split.classes.train)
    choice, candidates = fit_selected(encoder, lambda chosen: fit_image_encoder(
        encoder, _pick(paths, train), train_codes, params=params, config=chosen, device=device,
        validation=(_pick(paths, val), _pick(labels, val)) if val.size else None,
        heldout=(held_paths, held_labels) if held.size else None), config,
        num_train_classes=len(split.classes.train), validated=bool(val.size))
    start = "the pretrained start" if config.checkpoint is not None else "the untrained start"
    return _conclude(
        report, config, objective=choice.objective, result=choice.result, heldout=heldout, closed=closed,
        modality="image", selection=selection_summary(choice.result, split=split, start_name=start,
                                                      winner=choice.name, candidates=candidates),
        embed=lambda inputs: embed(encoder, inputs),
        train=(_pick(paths, train), train_codes, _pick([it.item_id for it in items], train), _pick(labels, train)),
        held=(held_paths, held_labels),
        export=(lambda: export_image_embedder(
            encoder, config.out_dir, embedding_dim=config.embedding_dim, preprocessing=params,
            backbone=config.backbone, training=_manifest_training(report, config.images_dir),
            metrics=report["methods"])) if export else None)


def train_texts(config: TextTrainConfig, *, export: bool = True, baselines: bool = True) -> dict[str, Any]:
    """Fine-tune, evaluate (with ``baselines`` unless told not) on held-out classes and (unless ``export`` is
    False) export a text embedder; returns the report."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    items = read_corpus(config.texts_file, "text")
    texts, labels = [item.text for item in items], require_labels(items)
    split = _split(labels, config)
    report = _new_report(config, split, "text")
    held, train, val = split.held, split.train, split.validation
    train, closed = _closed_set(config, train, inputs=texts, labels=labels, items=items)
    held_texts, held_labels = _pick(texts, held), _pick(labels, held)
    heldout: dict[str, np.ndarray] = {}  # method -> (N, D) held-out embeddings, for the pictures
    model = load_sentence_model(config.model, device=device, max_seq_length=config.max_seq_length)
    if held.size and baselines and distributed.is_main_process():
        report["methods"]["tfidf"] = score(tfidf_embeddings(held_texts, fit_texts=texts), held_labels,
                                           seed=config.seed)
        heldout["pretrained_model"] = embed_texts(model, held_texts)
        report["methods"]["pretrained_model"] = score(heldout["pretrained_model"], held_labels, seed=config.seed)
    if baselines and distributed.is_main_process():
        closed.score("tfidf", lambda inputs: tfidf_embeddings(inputs, fit_texts=texts))
        closed.score("pretrained_model", lambda inputs: embed_texts(model, inputs))
    train_codes = label_codes(_pick(labels, train), split.classes.train)
    validation = (_pick(texts, val), _pick(labels, val)) if val.size else None
    choice, candidates = fit_selected(model, lambda chosen: fit_text_encoder(
        model, _pick(texts, train), train_codes, config=chosen, device=device, validation=validation,
        heldout=(held_texts, held_labels) if held.size else None), config,
        num_train_classes=len(split.classes.train), validated=bool(val.size))
    policy, report["text_policy"] = resolve_text_policy(model, config.long_texts, validation)
    return _conclude(
        report, config, objective=choice.objective, result=choice.result, heldout=heldout, closed=closed,
        modality="text", selection=selection_summary(choice.result, split=split, start_name="the pretrained model",
                                                     winner=choice.name, candidates=candidates),
        embed=lambda inputs: embed_with_policy(model, inputs, policy),
        train=(_pick(texts, train), train_codes, _pick([it.item_id for it in items], train), _pick(labels, train)),
        held=(held_texts, held_labels),
        export=(lambda: export_text_embedder(
            model, config.out_dir, backbone=config.model, training=_manifest_training(report, config.texts_file),
            metrics=report["methods"], text_policy=policy)) if export else None)
