"""Objectives: what training minimises, on (N, D) embeddings and (N,) class indices.

- ``params``: the names of the objectives and ``ObjectiveParams``, every knob they read (free of torch, so
  that the command line lists them at once).
- ``base``: the one interface, ``Objective`` -> ``ObjectiveOutput`` (loss and, where there are any, logits).
- ``margins``: the target-logit rewrites of ArcFace, CosFace, SphereFace and the combined margin, pure.
- ``classifiers``, ``subcenter``, ``triplet``, ``partial_fc``: the objectives themselves.
- ``registry``: an objective by name (``build_objective``), and as a run starts it (``make_objective``).

Import from the modules; this file imports nothing, so that ``training.objectives.params`` stays light.
"""
