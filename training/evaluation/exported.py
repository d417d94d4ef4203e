"""Scoring an exported embedder bundle on a labelled corpus (what ``arcsearch evaluate`` prints)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from arcsearch.index.corpus import read_corpus, require_labels
from arcsearch.index.embedder import load_embedder
from arcsearch.index.preprocess import decode_image
from arcsearch.training.evaluation.scoring import score

logger = logging.getLogger(__name__)

EMBED_BATCH = 256  # images decoded and embedded at a time


def evaluate_bundle(bundle_dir: Path, corpus: Path, *, only_classes: list[str] | None = None) -> dict[str, Any]:
    """Score an exported embedder on a labelled corpus (image folder or text file); all classes unless
    ``only_classes`` is given (e.g. the manifest's ``training.holdout_classes``)."""
    start = time.perf_counter()
    embedder = load_embedder(Path(bundle_dir))
    wanted = set(only_classes) if only_classes is not None else None
    if embedder.modality == "image":
        items = [it for it in read_corpus(Path(corpus), "image") if wanted is None or it.label in wanted]
        vectors = np.concatenate([
            embedder.embed_images([decode_image(it.path) for it in items[s:s + EMBED_BATCH]])
            for s in range(0, len(items), EMBED_BATCH)]) if items else np.zeros((0, embedder.dim))
    else:
        items = [it for it in read_corpus(Path(corpus), "text") if wanted is None or it.label in wanted]
        vectors = embedder.embed_texts([it.text for it in items])
    if not items:
        raise ValueError(f"no items of the classes asked for in {corpus}")
    labels = require_labels(items, what="evaluation")
    result = score(vectors, labels)
    result.update(num_items=len(items), num_classes=len(set(labels)), seconds=time.perf_counter() - start)
    logger.info("%s: P@1 %.4f, R-precision %.4f, MAP@R %.4f on %d items of %d classes", bundle_dir,
                result["precision_at_1"], result["r_precision"], result["map_at_r"], len(items),
                result["num_classes"])
    return result
