"""Likely mislabelled training items, found with a trained sub-center ArcFace objective.

The sub-center ArcFace paper's rule: after training with k sub-centres per class, each class keeps its
dominant sub-centre (the one most of its samples are nearest to); samples nearest to another sub-centre of
their class, or farther than a threshold (75 degrees in the paper) from the dominant one, are likely noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from arcsearch.training.objectives.subcenter import SubCenterClassifier

DEFAULT_THRESHOLD_DEG = 75.0


@torch.no_grad()
def likely_mislabelled(objective: SubCenterClassifier, embeddings: Tensor, codes: Tensor, *,
                       threshold_deg: float = DEFAULT_THRESHOLD_DEG,
                       include_non_dominant: bool = True) -> list[dict[str, object]]:
    """Items whose angle to their class's dominant sub-centre exceeds ``threshold_deg`` or (with
    ``include_non_dominant``) whose nearest sub-centre of their class is not the dominant one.

    ``embeddings`` (N, D) of the training items and their (N,) int64 ``codes`` in [0, C); dominance is
    counted on these items. Returns one dict per flagged item, ``index`` (int, row in ``embeddings``),
    ``angle_to_dominant_deg`` (float, degrees) and ``nearest_subcentre_is_dominant`` (bool), sorted by
    angle, largest first.
    """
    embeddings, codes = embeddings.to(objective.weight), codes.to(objective.weight.device)
    dominant = objective.dominant_subcentres(embeddings, codes)  # (C,)
    rows = torch.arange(len(codes), device=codes.device)
    own = objective.subcentre_cosines(embeddings)[rows, codes]  # (N, k)
    to_dominant = own[rows, dominant[codes]].clamp(-1.0, 1.0)
    angle_deg = torch.rad2deg(torch.acos(to_dominant))
    nearest_is_dominant = own.argmax(dim=1) == dominant[codes]
    flagged = angle_deg > threshold_deg
    if include_non_dominant:
        flagged |= ~nearest_is_dominant
    items = [{"index": int(i), "angle_to_dominant_deg": float(angle_deg[i]),
              "nearest_subcentre_is_dominant": bool(nearest_is_dominant[i])}
             for i in flagged.nonzero().flatten().tolist()]
    return sorted(items, key=lambda item: -item["angle_to_dominant_deg"])


def mislabelled_report(objective: SubCenterClassifier, embeddings: np.ndarray, codes: np.ndarray,
                       item_ids: Sequence[str], labels: Sequence[str], *, limit: int = 100,
                       threshold_deg: float = DEFAULT_THRESHOLD_DEG) -> list[dict[str, object]]:
    """The ``limit`` training items farthest from their class's dominant sub-centre, as report rows naming
    each by external id and label, farthest first; ``past_threshold`` marks those beyond ``threshold_deg``
    (the paper's noise rule). (N, D) ``embeddings`` of the training items, (N,) ``codes``."""
    ranked = likely_mislabelled(objective, torch.from_numpy(embeddings), torch.from_numpy(codes),
                                threshold_deg=0.0, include_non_dominant=False)
    return [{"id": item_ids[row["index"]], "label": labels[row["index"]],
             "angle_to_dominant_deg": round(row["angle_to_dominant_deg"], 2),
             "past_threshold": row["angle_to_dominant_deg"] > threshold_deg,
             "nearest_subcentre_is_dominant": row["nearest_subcentre_is_dominant"]} for row in ranked[:limit]]
