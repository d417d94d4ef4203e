"""Margins of the softmax-family objectives as small pure functions.

``*_target`` maps the (N,) cosines of each row's own class to its target logit before the scale;
``*_logits`` applies it to (N, C) cosine logits: it rewrites the target entry of every row and multiplies
all logits by the scale s, so non-target logits stay s * cos. Angles are in radians.

- ``arcface_logits``: cos(theta + m) (ArcFace, additive angular margin).
- ``cosface_logits``: cos(theta) - m (CosFace, additive cosine margin).
- ``sphereface_logits``: psi(theta), SphereFace's monotonic extension of cos(m * theta) (multiplicative
  angular margin), on normalised features.
- ``combined_margin_logits``: cos(m1 * theta + m2) - m3 (insightface's combined margin), which is each of
  the three above for the right (m1, m2, m3).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SINE_SQUARED_EPS = 1e-12  # changes sin by at most 1e-6, below float32 resolution of a logit
COSINE_CLAMP = 1.0 - 1e-7  # acos of cosines clamped to this: its gradient 1/sin stays finite (about 2e3 at most)


def target_cosines(cosine: Tensor, labels: Tensor) -> Tensor:
    """(N,) cosine of each row's target class; ValueError unless ``cosine`` is (N, C) and ``labels`` (N,)."""
    if cosine.dim() != 2 or labels.shape != (cosine.shape[0],):
        raise ValueError(f"expected cosine (N, C) and labels (N,), got {tuple(cosine.shape)} "
                         f"and {tuple(labels.shape)}")
    return cosine.gather(1, labels.view(-1, 1)).squeeze(1)


def with_targets(cosine: Tensor, labels: Tensor, target: Tensor, scale: float) -> Tensor:
    """(N, C) ``cosine`` with entry (i, labels[i]) replaced by ``target[i]``, all times ``scale``."""
    # one pass over the (N, C) matrix: scale it, then overwrite the N targets in place (autograd-safe: the
    # product is a fresh tensor whose backward does not need its own value)
    return (cosine * scale).scatter_(1, labels.view(-1, 1), (target * scale).unsqueeze(1).to(cosine.dtype))


def _angles(cosine: Tensor) -> Tensor:
    """theta = acos(cos) in [0, pi], with cos clamped to +-``COSINE_CLAMP`` so that gradients stay finite."""
    return torch.acos(torch.clamp(cosine, -COSINE_CLAMP, COSINE_CLAMP))


def arcface_target(target_cos: Tensor, *, margin_rad: float, easy_margin: bool = False) -> Tensor:
    """ArcFace's target logit (before the scale) from the (N,) target cosines: cos(theta + m).

    cos(theta + m) = cos*cos(m) - sin*sin(m) with sin = sqrt(clamp(1 - cos^2, 0)). Where theta + m would
    pass pi (cos <= cos(pi - m)) the target is cos - m*sin(m) instead, which keeps it decreasing in theta;
    with ``easy_margin`` the margin applies only where cos > 0 and other targets keep cos.
    """
    if not 0.0 <= margin_rad < math.pi / 2:
        raise ValueError(f"margin_rad must lie in [0, pi/2), got {margin_rad}")
    # clamp at a tiny epsilon, not 0: at cos = +-1 sqrt's gradient would be inf and 0 * inf = NaN
    sine = torch.sqrt(torch.clamp(1.0 - target_cos * target_cos, min=SINE_SQUARED_EPS))
    with_margin = target_cos * math.cos(margin_rad) - sine * math.sin(margin_rad)
    if easy_margin:
        return torch.where(target_cos > 0, with_margin, target_cos)
    threshold = math.cos(math.pi - margin_rad)
    return torch.where(target_cos > threshold, with_margin, target_cos - margin_rad * math.sin(margin_rad))


def arcface_logits(cosine: Tensor, labels: Tensor, *, scale: float, margin_rad: float,
                   easy_margin: bool = False) -> Tensor:
    """Rewrite the target logits of ``cosine`` (N, C) to cos(theta + m) (``arcface_target``), then multiply
    all by ``scale``. ``labels`` (N,) holds class indices in [0, C). Non-target logits are unchanged.
    Returns (N, C) logits for cross-entropy.
    """
    target = arcface_target(target_cosines(cosine, labels), margin_rad=margin_rad, easy_margin=easy_margin)
    return with_targets(cosine, labels, target, scale)


def cosface_target(target_cos: Tensor, *, margin: float) -> Tensor:
    """CosFace's target logit (before the scale): cos(theta) - ``margin`` (a cosine, not an angle)."""
    if margin < 0:
        raise ValueError(f"the CosFace margin must be non-negative, got {margin}")
    return target_cos - margin


def cosface_logits(cosine: Tensor, labels: Tensor, *, scale: float, margin: float) -> Tensor:
    """CosFace: target logits cos(theta) - ``margin`` (``cosface_target``), all logits times ``scale``.

    ``cosine`` (N, C), ``labels`` (N,) in [0, C); returns (N, C) logits.
    """
    return with_targets(cosine, labels, cosface_target(target_cosines(cosine, labels), margin=margin), scale)


def sphereface_psi(theta: Tensor, m: float) -> Tensor:
    """SphereFace's psi(theta) = (-1)^k cos(m theta) - 2k for theta in [k pi/m, (k+1) pi/m], k = 0, 1, ...

    Equal to cos(m theta) on [0, pi/m]; each piece falls from 1 - 2k to -1 - 2k, so psi is continuous and
    decreasing on [0, pi] for any real m >= 1 (psi = cos(theta) at m = 1). ``theta`` in radians.
    """
    k = torch.floor(theta.detach() * m / math.pi)  # piece index: constant within a piece, no gradient
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k
    return sign * torch.cos(m * theta) - 2.0 * k


def sphereface_target(target_cos: Tensor, *, m: float) -> Tensor:
    """SphereFace's target logit (before the scale): psi(theta) (``sphereface_psi``), m >= 1."""
    if m < 1:
        raise ValueError(f"the SphereFace margin m must be at least 1, got {m}")
    return sphereface_psi(_angles(target_cos), m)


def sphereface_logits(cosine: Tensor, labels: Tensor, *, scale: float, m: float) -> Tensor:
    """SphereFace (A-Softmax) margin in arccos form: target logits psi(theta) (``sphereface_psi``) with the
    multiplicative angular margin ``m`` >= 1 (integer or real), all logits times ``scale``.

    Unlike the original SphereFace (unnormalised features, m = 4, softmax blended in with an annealed
    weight lambda), features and centres are normalised and scaled by s, as in the ArcFace paper's
    SphereFace rows: there a small real m (1.35) trains without annealing, while m = 4 on normalised
    features makes the target too hard to reach. ``cosine`` (N, C), ``labels`` (N,); returns (N, C).
    """
    return with_targets(cosine, labels, sphereface_target(target_cosines(cosine, labels), m=m), scale)


def combined_margin_target(target_cos: Tensor, *, m1: float, m2: float, m3: float) -> Tensor:
    """insightface's combined margin target (before the scale): cos(m1 * theta + m2) - m3.

    (m1, m2, m3) = (1, m, 0) is ArcFace (``arcface_target``), (1, 0, m) CosFace, (m, 0, 0) SphereFace on
    [0, pi/m]. Past theta0 = (pi - m2) / m1, where m1 * theta + m2 passes pi and cos would rise again, the
    target is cos(theta) - m3 - d with d = max(m2 * sin(m2), 1 + cos(theta0)): at least ArcFace's own
    fallback (so that (1, m, 0) equals ArcFace exactly) and at least the drop that starts the fallback
    below -1 - m3, the value reached at theta0; so the target decreases over all of [0, pi].
    Needs m1 > 0, 0 <= m2 < pi/2, m3 >= 0.
    """
    if m1 <= 0 or not 0.0 <= m2 < math.pi / 2 or m3 < 0:
        raise ValueError(f"the combined margin needs m1 > 0, 0 <= m2 < pi/2, m3 >= 0; got {m1}, {m2}, {m3}")
    theta = _angles(target_cos)
    theta0 = (math.pi - m2) / m1
    with_margin = torch.cos(m1 * theta + m2) - m3
    if theta0 < math.pi:
        drop = max(m2 * math.sin(m2), 1.0 + math.cos(theta0))
        with_margin = torch.where(theta <= theta0, with_margin, target_cos - m3 - drop)
    return with_margin


def combined_margin_logits(cosine: Tensor, labels: Tensor, *, scale: float, m1: float, m2: float,
                           m3: float) -> Tensor:
    """The combined margin (``combined_margin_target``) on the target logits of ``cosine`` (N, C), all
    logits times ``scale``. ``labels`` (N,); returns (N, C)."""
    target = combined_margin_target(target_cosines(cosine, labels), m1=m1, m2=m2, m3=m3)
    return with_targets(cosine, labels, target, scale)
