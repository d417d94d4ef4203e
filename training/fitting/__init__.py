"""Fitting an encoder of one modality with an objective: what ``training.run`` calls between the split and
the export.

- ``image``: an image encoder on decoded, augmented images (and the PCA start of its projection).
- ``text``: a sentence-transformers model on tokenized texts, in length-bucketed batches.

Both build the objective, cut the epochs into batches and hand them to ``training.engine.loop.fit``.
"""
