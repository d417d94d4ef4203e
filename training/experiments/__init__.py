"""Experiments over many training runs: objectives compared, each objective's knobs tuned.

- ``compare``: every objective on the same data, seeds and budget; mean ± std tables and pictures.
- ``tuning``: each objective's grid of hyper-parameters, scored on validation classes.
- ``reuse``: an earlier run's report taken instead of training the same configuration again.

They call ``training.run`` once per run; this file imports nothing.
"""
