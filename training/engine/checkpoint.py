"""Training checkpoints: one file of tensors and plain containers, written atomically, read without pickle.

A checkpoint is a dict (see ``training.engine.trainer.Trainer.state``) of state dicts, ints, floats, strings, lists
and None only, so ``torch.load(weights_only=True)`` reads it. A numpy ``Generator``'s state is already such
a dict (``{"bit_generator": "PCG64", "state": {"state": int, "inc": int}, ...}``); ``rng_state`` makes sure.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def checkpoint_path(directory: Path, *, rank: int | None = None) -> Path:
    """``<directory>/last.pt``; ``last-rank<r>.pt`` for a rank whose state differs from the others'
    (an objective that shards its parameters over ranks)."""
    return Path(directory) / ("last.pt" if rank is None else f"last-rank{rank}.pt")


def _plain(value: Any) -> Any:
    """``value`` with every mapping made a dict, every sequence a list, numpy scalars python numbers."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The state of ``rng`` as plain python ints and strings (loadable with ``weights_only=True``)."""
    return _plain(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Put ``rng`` back in ``state`` (from ``rng_state``); the bit generator kinds must match."""
    rng.bit_generator.state = state


def torch_rng_states() -> dict[str, Any]:
    """Torch's CPU generator state, and the current CUDA device's where CUDA is in use."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_torch_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``torch_rng_states`` gave."""
    torch.set_rng_state(states["cpu"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.debug("checkpoint written to %s", path)


def load_checkpoint(path: Path, *, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (``weights_only=True``: no arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}: drop resume to start afresh")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {state.get('format_version')!r}, expected {FORMAT_VERSION}")
    return state
