"""The engine: how training takes its steps, whatever the modality and the objective.

- ``loop``: ``fit``, the loop over epochs (read it first).
- ``trainer``: ``Trainer``, the state of one fit (a step, the end of an epoch, checkpoints) and ``FitResult``.
- ``step``: the module a step calls (the encoder under autocast, then the objective), wrapped for DDP.
- ``optimiser``: AdamW with the encoder's and the class centres' rates, and the schedules.
- ``precision``: autocast, the fp16 gradient scaler, the divergence guard.
- ``distributed``: torchrun's process group, per-rank batch slices, collectives.
- ``checkpoint``: the checkpoint file (atomic, read without pickle) and RNG states.

The engine reads a ``training.config.TrainConfig`` and never imports it at run time; this file imports nothing.
"""
