"""Augmentation policies of image training: named strengths of ``training.data.images.Augmentation``.

``none`` trains on the preprocessed images as they are; ``light``, ``default`` and ``strong`` crop, flip and
change brightness more and more; ``flip=False`` never flips (text in images, left/right-sensitive shapes).
``auto`` is not a policy but a request: ``training.remedies`` trains with each of ``AUTO_POLICIES`` and
keeps the one with the best validation score.
"""

from __future__ import annotations

import dataclasses

from arcsearch.training.data.images import Augmentation

POLICIES: dict[str, Augmentation | None] = {
    "none": None,
    "light": Augmentation(crop_area=(0.9, 1.0), crop_aspect=(0.95, 1.05), flip_probability=0.5, brightness=0.1),
    "default": Augmentation(),
    "strong": Augmentation(crop_area=(0.5, 1.0), crop_aspect=(0.75, 1.33), flip_probability=0.5, brightness=0.4),
}
AUGMENT_CHOICES = (*POLICIES, "auto")
AUTO_POLICIES = ("default", "none", "light", "strong")  # tried in this order; the earlier wins a tie


def augmentation_for(policy: str, *, flip: bool = True) -> Augmentation | None:
    """The ``Augmentation`` of a named ``policy`` (None for ``none``), never flipping unless ``flip``."""
    if policy not in POLICIES:
        raise ValueError(f"augmentation policy must be one of {tuple(POLICIES)}, got {policy!r}")
    aug = POLICIES[policy]
    return aug if aug is None or flip else dataclasses.replace(aug, flip_probability=0.0)
