"""Evaluation on held-out classes, the way the field does it, and what is reported beside it.

- ``metrics``: retrieval metrics (P@1, R-precision, MAP@R) and the ArcFace paper's angle statistics.
- ``verification``: pair verification (the LFW 10-fold accuracy, TAR at fixed FAR).
- ``baselines``: the untrained backbone, raw pixels, TF-IDF.
- ``scoring``: embedding held-out data with an in-memory encoder, one method's scores, the table.
- ``exported``: scoring an exported embedder bundle (``arcsearch evaluate``).
- ``mislabelled``: likely mislabelled training items by a sub-center ArcFace objective.
- ``plots``, ``figures``: the PNG pictures of a run and of a comparison.

This file imports nothing.
"""
