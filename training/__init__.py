"""Offline training of the encoders, by room (each sub-package's ``__init__`` lists its modules):

- ``config``: ``TrainConfig`` (and its image and text kinds), checked once when made.
- ``run``: ``train_images`` / ``train_texts``: split, baselines, fit, score, export, report.
- ``objectives``: what training minimises (ArcFace and the other margins, softmax, triplet, Partial FC).
- ``engine``: how it takes its steps (the loop, precision, data parallelism, optimiser, checkpoints).
- ``data``: class splits, samplers, image augmentation.
- ``fitting``: an image or a text encoder fitted with an objective.
- ``evaluation``: held-out retrieval and verification metrics, baselines, pictures.
- ``experiments``: objectives compared and tuned over many runs.
- ``backbones``, ``export``: the image encoders, and the headless bundles ``index`` loads.

Imports point down this list's rooms (experiments -> run -> fitting -> engine, objectives, data); no
package ``__init__`` imports anything, so that naming a light module (``objectives.params``) stays light.
"""
