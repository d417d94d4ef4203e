"""ArcFace's additive angular margin, as a small pure function on cosine logits."""

from __future__ import annotations

import math

import torch
from torch import Tensor

SINE_SQUARED_EPS = 1e-12  # changes sin by at most 1e-6, below float32 resolution of a logit


def arcface_logits(cosine: Tensor, labels: Tensor, *, scale: float, margin_rad: float,
                   easy_margin: bool = False) -> Tensor:
    """Rewrite the target logits of ``cosine`` (N, C) to cos(theta + m), then multiply all by ``scale``.

    ``labels`` (N,) holds class indices in [0, C). cos(theta + m) = cos*cos(m) - sin*sin(m) with
    sin = sqrt(clamp(1 - cos^2, 0)). Where theta + m would pass pi (cos <= cos(pi - m)) the target
    logit is cos - m*sin(m) instead, which keeps the logit decreasing in theta; with ``easy_margin``
    the margin applies only where cos > 0 and other targets keep cos. Non-target logits are unchanged.
    Returns (N, C) logits for cross-entropy.
    """
    if cosine.dim() != 2 or labels.shape != (cosine.shape[0],):
        raise ValueError(f"expected cosine (N, C) and labels (N,), got {tuple(cosine.shape)} "
                         f"and {tuple(labels.shape)}")
    if not 0.0 <= margin_rad < math.pi / 2:
        raise ValueError(f"margin_rad must lie in [0, pi/2), got {margin_rad}")
    target_cos = cosine.gather(1, labels.view(-1, 1)).squeeze(1)  # (N,)
    # clamp at a tiny epsilon, not 0: at cos = +-1 sqrt's gradient would be inf and 0 * inf = NaN
    sine = torch.sqrt(torch.clamp(1.0 - target_cos * target_cos, min=SINE_SQUARED_EPS))
    with_margin = target_cos * math.cos(margin_rad) - sine * math.sin(margin_rad)
    if easy_margin:
        target = torch.where(target_cos > 0, with_margin, target_cos)
    else:
        threshold = math.cos(math.pi - margin_rad)
        target = torch.where(target_cos > threshold, with_margin, target_cos - margin_rad * math.sin(margin_rad))
    one_hot = torch.zeros_like(cosine, dtype=torch.bool).scatter_(1, labels.view(-1, 1), True)
    logits = torch.where(one_hot, target.unsqueeze(1).to(cosine.dtype), cosine)
    return logits * scale
