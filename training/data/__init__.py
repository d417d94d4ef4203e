"""Data for training: which classes train, which are held out, and the batches an epoch is cut into.

- ``splits``: class-disjoint train / validation / held-out splits, label codes, shuffled and
  length-bucketed batches.
- ``samplers``: P x K and class-balanced batches, and the choice of a sampler for an objective.
- ``images``: augmenting training images on the fly.
- ``streaming``: image files decoded and augmented by DataLoader workers as the steps need them.

Reading a corpus from disk is ``index.corpus``'s job; this file imports nothing.
"""
