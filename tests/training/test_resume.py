"""Checkpoints: a run interrupted mid-epoch and resumed ends bit-for-bit where an uninterrupted run does.

The synthetic problem draws its batch order and an augmentation noise from a numpy generator and uses
dropout (torch's RNG), so resuming must restore both; the image-trainer test does the same with real
augmentation through ``fit_image_encoder``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from arcsearch.training.config import TrainConfig
from arcsearch.training.engine import distributed
from arcsearch.training.engine.checkpoint import checkpoint_path, load_checkpoint
from arcsearch.training.engine.loop import fit
from arcsearch.training.engine.results import Batch, FitResult
from arcsearch.training.fitting.image import fit_image_encoder
from arcsearch.training.objectives.params import ObjectiveParams
from arcsearch.training.objectives.registry import build_objective

NUM_CLASSES, INPUT_DIM, EMBEDDING_DIM, NUM_ITEMS, BATCH = 6, 12, 8, 90, 16


class Crash(RuntimeError):
    """A simulated interruption."""


def synthetic_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(NUM_ITEMS, INPUT_DIM) float32 points around one random centre per class, and their (NUM_ITEMS,) labels."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_ITEMS) % NUM_CLASSES
    centres = torch.randn(NUM_CLASSES, INPUT_DIM, generator=gen)
    return centres[labels] + 0.5 * torch.randn(NUM_ITEMS, INPUT_DIM, generator=gen), labels


def make_encoder(*, dropout: float = 0.2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(INPUT_DIM, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, EMBEDDING_DIM))


def arcface_objective(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return build_objective("arcface", NUM_CLASSES, EMBEDDING_DIM, ObjectiveParams(scale=16.0))


def make_batches(rng: np.random.Generator, *, batch_size: int = BATCH, noise: float = 0.1,
                 crash_after: int | None = None) -> Callable[[int], Iterable[Batch]]:
    """Shuffled (sharded under torchrun) batches with rng-drawn input noise; ``crash_after`` batches in all,
    counted over epochs, raise ``Crash``."""
    points, labels = synthetic_data()
    served = [0]

    def batches(epoch: int) -> Iterator[Batch]:
        order = rng.permutation(NUM_ITEMS)
        for start in range(0, NUM_ITEMS, batch_size):
            if crash_after is not None and served[0] == crash_after:
                raise Crash(f"simulated crash after {crash_after} batches")
            served[0] += 1
            index, = distributed.shard(order[start:start + batch_size])
            jitter = torch.from_numpy(rng.normal(0.0, noise, (len(order[start:start + batch_size]), INPUT_DIM)))
            jitter, = distributed.shard(jitter)
            yield points[index] + jitter.float(), labels[index]

    return batches


def steps_per_epoch(batch_size: int = BATCH) -> int:
    return -(-NUM_ITEMS // batch_size)


def train_config(**overrides: Any) -> TrainConfig:
    base = dict(epochs=4, lr=3e-3, head_lr=3e-2, margin_warmup_fraction=0.3, show_progress=False)
    return TrainConfig(**{**base, **overrides})


def scripted_validation(scores: list[float]) -> tuple[Callable[[], float], Callable[[int], None]]:
    """A ``validate`` returning ``scores[epoch]`` of the epoch last started, and the hook that records it."""
    current = [0]
    return (lambda: scores[current[0]]), (lambda epoch: current.__setitem__(0, epoch))


def run(config: TrainConfig, *, crash_after: int | None = None,
        scores: list[float] | None = None) -> tuple[nn.Module, nn.Module, FitResult]:
    """A fresh encoder, objective and generator (seed 0), trained with ``fit``."""
    encoder, objective, rng = make_encoder(), arcface_objective(), np.random.default_rng(0)
    batches = make_batches(rng, crash_after=crash_after)
    validate = None
    if scores is not None:
        validate, started = scripted_validation(scores)
        inner = batches

        def batches(epoch: int) -> Iterable[Batch]:
            started(epoch)
            return inner(epoch)

    torch.manual_seed(123)  # the dropout stream; a resumed run must take it from the checkpoint instead
    result = fit(encoder, objective, batches=batches, embed=encoder, config=config,
                 steps_per_epoch=steps_per_epoch(), validate=validate, rng=rng)
    return encoder, objective, result


def assert_same_run(a: tuple[nn.Module, nn.Module, FitResult], b: tuple[nn.Module, nn.Module, FitResult]) -> None:
    for module_a, module_b in zip(a[:2], b[:2], strict=True):
        for (name, pa), (_, pb) in zip(module_a.state_dict().items(), module_b.state_dict().items(), strict=True):
            assert torch.equal(pa, pb), name
    result_a, result_b = dataclasses.asdict(a[2]), dataclasses.asdict(b[2])
    result_a.pop("train_seconds"), result_b.pop("train_seconds")
    assert result_a == result_b


@pytest.mark.parametrize(("crash_after", "epoch", "position"), [(9, 1, 2), (13, 1, 6), (17, 2, 4)])
def test_resume_is_bit_for_bit(tmp_path: Path, crash_after: int, epoch: int, position: int) -> None:
    """6 steps per epoch, a checkpoint every 4: resume mid-epoch, at an epoch's end before its validation,
    and after the best validation epoch (whose weights must come back at the end)."""
    scores = [0.3, 0.8, 0.5, 0.6]
    straight = run(train_config(), scores=scores)
    assert straight[2].best_epoch == 1 and len(straight[2].step_losses) == 4 * steps_per_epoch()
    with_checkpoints = train_config(checkpoint_every=4, checkpoint_dir=tmp_path)
    with pytest.raises(Crash):
        run(with_checkpoints, crash_after=crash_after, scores=scores)
    state = load_checkpoint(checkpoint_path(tmp_path))
    assert (state["epoch"], state["position"]) == (epoch, position)
    resumed = run(dataclasses.replace(with_checkpoints, resume=True), scores=scores)
    assert_same_run(straight, resumed)


def test_resume_without_a_generator_of_batches_differs(tmp_path: Path) -> None:
    """Control: skipping the generator restore really changes the run, so the test above can fail."""
    straight = run(train_config(epochs=2))
    with pytest.raises(Crash):
        run(train_config(epochs=2, checkpoint_every=4, checkpoint_dir=tmp_path), crash_after=9)
    encoder, objective, rng = make_encoder(), arcface_objective(), np.random.default_rng(0)
    result = fit(encoder, objective, batches=make_batches(rng), embed=encoder, steps_per_epoch=steps_per_epoch(),
                 config=train_config(epochs=2, checkpoint_dir=tmp_path, resume=True))  # no rng: not restored
    assert result.step_losses[:8] == straight[2].step_losses[:8]
    assert result.step_losses[8:] != straight[2].step_losses[8:]


def test_checkpoint_is_plain_and_written_atomically(tmp_path: Path) -> None:
    _, _, result = run(train_config(epochs=1, checkpoint_every=2, checkpoint_dir=tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary files left behind
    state = load_checkpoint(checkpoint_path(tmp_path))  # weights_only=True inside
    assert state["step"] == 6 and state["epoch"] == 0 and state["position"] == 6
    assert state["epoch_rng"]["bit_generator"] == "PCG64" and isinstance(state["epoch_rng"]["state"]["state"], int)
    assert state["result"]["step_losses"] == result.step_losses
    assert set(state["optimizer"]) == {"state", "param_groups"} and state["torch_rng"]["cpu"].dtype == torch.uint8


def test_resume_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no training checkpoint"):
        run(train_config(checkpoint_dir=tmp_path, resume=True))


def test_image_trainer_resumes_bit_for_bit(faces_subset: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Real augmentation (drawn from the trainer's generator) and BatchNorm, through ``fit_image_encoder``."""
    from arcsearch.index.bundle import ImagePreprocessing
    from arcsearch.index.corpus import read_image_folder
    from arcsearch.training.backbones import build_image_encoder
    from arcsearch.training.config import ImageTrainConfig
    from arcsearch.training.data.splits import label_codes

    items = read_image_folder(faces_subset)[:48]
    paths, labels = [item.path for item in items], [item.label for item in items]
    codes = label_codes(labels, sorted(set(labels)))
    params = ImagePreprocessing(height=48, width=48)

    def train(**overrides: Any) -> tuple[nn.Module, nn.Module, FitResult]:
        config = ImageTrainConfig(images_dir=faces_subset, out_dir=tmp_path / "unused", backbone="small_cnn",
                                  image_size=48, embedding_dim=16, epochs=2, batch_size=12, lr=3e-3, device="cpu",
                                  show_progress=False, workers=0, **overrides)
        torch.manual_seed(0)
        encoder = build_image_encoder("small_cnn", embedding_dim=16)
        objective, result = fit_image_encoder(encoder, paths, codes, params=params, config=config,
                                              device=torch.device("cpu"))
        return encoder, objective, result

    straight = train()
    from arcsearch.training.fitting import image as image_fitting

    original, calls = image_fitting.shuffled_batches, [0]

    def crashing_batches(*args: Any, **kwargs: Any) -> Iterable[np.ndarray]:
        batches = original(*args, **kwargs)
        calls[0] += 1  # 1: counting steps, 2: epoch 1, 3: epoch 2
        if calls[0] < 3:
            return batches
        return (batch if k < 2 else _raise(Crash("simulated crash")) for k, batch in enumerate(batches))

    with monkeypatch.context() as patch:
        patch.setattr(image_fitting, "shuffled_batches", crashing_batches)
        with pytest.raises(Crash):
            train(checkpoint_every=1, checkpoint_dir=tmp_path / "ckpt")
    assert load_checkpoint(checkpoint_path(tmp_path / "ckpt"))["position"] == 2
    resumed = train(checkpoint_every=1, checkpoint_dir=tmp_path / "ckpt", resume=True)
    assert_same_run(straight, resumed)


def _raise(error: Exception) -> Any:
    raise error
