"""Embedding held-out data with in-memory encoders (images streamed from their files) and scoring retrieval on it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.training.data.streaming import image_batches
from arcsearch.training.evaluation.metrics import angle_statistics, retrieval_metrics
from arcsearch.training.evaluation.verification import verification_report

logger = logging.getLogger(__name__)

METRIC_NAMES = ("precision_at_1", "r_precision", "map_at_r")


LoaderBatches = Iterable[tuple[torch.Tensor, torch.Tensor]]  # (pixels (B, 3, H, W), positions (B,)) batches


def embedding_batches(encoder: nn.Module, batches: LoaderBatches, *, device: torch.device | str = "cpu",
                      normalise: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(B, D) float32 embeddings by ``encoder`` in eval mode (L2-normalised unless told not) and the (B,)
    positions of each (pixels (B, 3, H, W), positions (B,)) batch, as the loader gives them."""
    was_training = encoder.training
    encoder.eval()
    try:
        for pixels, positions in batches:
            with torch.inference_mode():
                vectors = encoder(pixels.to(device, non_blocking=True)).float()
                vectors = nn.functional.normalize(vectors, dim=1) if normalise else vectors
            yield vectors.cpu().numpy(), positions.numpy()
    finally:
        encoder.train(was_training)


def embed_images(encoder: nn.Module, batches: LoaderBatches, *,
                 device: torch.device | str = "cpu", normalise: bool = True) -> np.ndarray:
    """(N, D) float32 embeddings of all ``batches`` (see ``embedding_batches``), in their order."""
    chunks = [vectors for vectors, _ in embedding_batches(encoder, batches, device=device, normalise=normalise)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def embed_files(encoder: nn.Module, paths: Sequence[Path], params: ImagePreprocessing, *, workers: int = 0,
                device: torch.device | str = "cpu", normalise: bool = True) -> np.ndarray:
    """(N, D) embeddings of the image files ``paths``, decoded a batch at a time by ``workers`` processes."""
    return embed_images(encoder, image_batches(paths, params, workers=workers, device=device), device=device,
                        normalise=normalise)


@torch.inference_mode()
def embed_texts(model: nn.Module, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """(N, D) float32 L2-normalised embeddings of ``texts`` by a SentenceTransformer in eval mode."""
    was_training = model.training
    model.eval()
    vectors = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                           normalize_embeddings=True, show_progress_bar=False)
    model.train(was_training)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def score(embeddings: Any, labels: Sequence[str], *, angles: bool = True, verification: bool = True,
          seed: int = 0) -> dict[str, Any]:
    """Retrieval metrics of one method, plus pair verification (LFW 10-fold accuracy, TAR@FAR; dense or
    sparse embeddings; left out with a warning when the pairs are too few) and, for dense embeddings,
    ArcFace angle statistics."""
    result: dict[str, Any] = retrieval_metrics(embeddings, labels)
    if verification:
        try:
            result["verification"] = verification_report(embeddings, labels, seed=seed)
        except ValueError as error:  # too few pairs for 10 folds, or one class only
            logger.warning("no verification numbers: %s", error)
    if angles and isinstance(embeddings, np.ndarray):
        result["angles"] = angle_statistics(embeddings, labels)
    return result


def _cell(value: float | None, width: int) -> str:
    return f"{'n/a' if value is None or value != value else f'{value:.4f}':>{width}}"


def format_table(methods: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per method, columns P@1, R-precision, MAP@R, verification accuracy
    (mean ± std over 10 folds), TAR at FAR 1e-3 and train seconds ('n/a' where not measured)."""
    header = (f"{'method':<24} {'P@1':>7} {'R-prec':>7} {'MAP@R':>7} {'verif acc':>15} {'TAR@1e-3':>8} "
              f"{'train s':>8}")
    rows = [header, "-" * len(header)]
    for name, result in methods.items():
        seconds = result.get("train_seconds")
        verif = result.get("verification") or {}
        accuracy = (f"{verif['accuracy_mean']:.4f}±{verif['accuracy_std']:.4f}" if "accuracy_mean" in verif
                    else "n/a")
        rows.append(f"{name:<24} {result['precision_at_1']:>7.4f} {result['r_precision']:>7.4f} "
                    f"{result['map_at_r']:>7.4f} {accuracy:>15} {_cell(verif.get('tar_at_far_1e-3'), 8)} "
                    f"{'' if seconds is None else f'{seconds:.1f}':>8}")
    return "\n".join(rows)
