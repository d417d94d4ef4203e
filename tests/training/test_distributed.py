"""Data-parallel training: 2 gloo processes on cpu follow the loss curve of 1 process on the same global batches.

The global batch of 15 splits 8 / 7 over the ranks, so the loss and gradient weighting of uneven slices is
exercised. Ranks are spawned on 127.0.0.1 with a free port, as torchrun would set their environment.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.training.data.images import Augmentation, image_batch
from arcsearch.training.data.streaming import ImageFiles, plan_batch
from arcsearch.training.engine import distributed
from arcsearch.training.engine.loop import fit
from arcsearch.training.engine.results import FitResult
from arcsearch.training.engine.step import Embedding, training_model
from tests.training.test_resume import arcface_objective, make_batches, make_encoder, steps_per_epoch, train_config

GLOBAL_BATCH, EPOCHS, WORLD = 15, 2, 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(checkpoint_dir: Path | None = None) -> tuple[nn.Module, nn.Module, FitResult]:
    """The same small deterministic run (no dropout, no BatchNorm) in every process; rank 0 validates."""
    encoder, objective, rng = make_encoder(dropout=0.0), arcface_objective(), np.random.default_rng(0)
    scores = iter([0.1, 0.25, 0.75])  # the start ("epoch 0"), then each epoch

    def validate() -> float:
        assert distributed.is_main_process(), "only rank 0 validates"
        return next(scores)

    every = dict(checkpoint_every=3, checkpoint_dir=checkpoint_dir) if checkpoint_dir is not None else {}
    result = fit(encoder, objective, batches=make_batches(rng, batch_size=GLOBAL_BATCH), embed=encoder,
                 config=train_config(epochs=EPOCHS, **every), steps_per_epoch=steps_per_epoch(GLOBAL_BATCH),
                 validate=validate)
    return encoder, objective, result


def wrapping(encoder: nn.Module) -> dict[str, bool]:
    """What DDP wraps for a plain objective and for one that ``handles_distribution`` itself."""
    cpu = torch.device("cpu")
    plain = training_model(Embedding(encoder, encoder, precision="fp32", device=cpu), arcface_objective(), cpu)
    flagged_objective = arcface_objective()
    flagged_objective.handles_distribution = True
    flagged = training_model(Embedding(encoder, encoder, precision="fp32", device=cpu), flagged_objective, cpu)
    return {"plain_whole": isinstance(plain, DistributedDataParallel),
            "flagged_whole": isinstance(flagged, DistributedDataParallel),
            "flagged_embedding": isinstance(getattr(flagged, "embedding", None), DistributedDataParallel)}


def random_images(count: int = 5) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)) for _ in range(count)]


def augmented_views(folder: Path) -> dict[str, Any]:
    """This rank's augmented views of a global batch of 5 image files (written to ``folder``), as its loader
    workers would make them, and its generator's state after planning the batch."""
    folder.mkdir(parents=True)
    paths = [folder / f"{i}.png" for i in range(5)]
    for image, path in zip(random_images(), paths, strict=True):
        image.save(path)
    rng = np.random.default_rng(3)
    keys = plan_batch(np.arange(5), rng, augmented=True)
    files = ImageFiles(paths, ImagePreprocessing(height=32, width=32), aug=Augmentation())
    return {"views": torch.stack([files[key][0] for key in keys]), "view_index": torch.tensor([i for i, _ in keys]),
            "rng_after": float(rng.random())}


def worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    with distributed.distributed_session(timeout_minutes=1.0):
        encoder, objective, result = train(Path(out_dir) / "checkpoints")
        report: dict[str, Any] = {"step_losses": result.step_losses, "validation_scores": result.validation_scores,
                                  "encoder": encoder.state_dict(), "objective": objective.state_dict(),
                                  "world": distributed.world_size(), **wrapping(encoder),
                                  **augmented_views(Path(out_dir) / f"images{rank}")}
        torch.save(report, Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Spawn the ranks once: (their output folder, what each rank reported)."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_two_ranks_follow_the_one_process_loss_curve(ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    out, reports = ranks
    encoder, objective, single = train()
    assert all(rank["world"] == WORLD for rank in reports)
    assert len(single.step_losses) == EPOCHS * steps_per_epoch(GLOBAL_BATCH) == len(reports[0]["step_losses"])
    np.testing.assert_allclose(reports[0]["step_losses"], single.step_losses, rtol=1e-5)
    assert reports[0]["step_losses"] == reports[1]["step_losses"]
    assert reports[0]["validation_scores"] == reports[1]["validation_scores"] == single.validation_scores
    for name, value in {**encoder.state_dict(), **objective.state_dict()}.items():
        theirs = {**reports[0]["encoder"], **reports[0]["objective"]}[name]
        torch.testing.assert_close(theirs, value, rtol=1e-4, atol=1e-5, msg=name)
    for part in ("encoder", "objective"):  # DDP keeps encoder and class centres identical on every rank
        for name, value in reports[0][part].items():
            assert torch.equal(value, reports[1][part][name]), name
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.pt"]  # rank 0 writes it alone
    assert reports[0]["plain_whole"] and not reports[0]["flagged_whole"] and reports[0]["flagged_embedding"]


def test_each_rank_augments_its_slice_as_any_rank_would(ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    """Under DDP an image's view depends only on its seed (drawn from the shared generator), not on the rank,
    and the ranks' generators stay in step."""
    _, reports = ranks
    rng = np.random.default_rng(3)
    seeds = rng.integers(2**63, size=5)
    images, params = random_images(), ImagePreprocessing(height=32, width=32)
    expected = [image_batch([img], params, aug=Augmentation(), rng=np.random.default_rng(seed))
                for img, seed in zip(images, seeds, strict=True)]
    after = float(rng.random())
    for r, report in enumerate(reports):
        assert report["view_index"].tolist() == list(range(5))[r::WORLD]
        assert torch.equal(report["views"], torch.cat(expected[r::WORLD]))
        assert report["rng_after"] == after


def test_the_process_group_backend_follows_the_training_device() -> None:
    assert distributed.process_group_backend("auto", cuda_available=True) == "nccl"
    assert distributed.process_group_backend("cuda", cuda_available=True) == "nccl"
    assert distributed.process_group_backend("cpu", cuda_available=True) == "gloo"  # --device cpu on a GPU host
    assert distributed.process_group_backend("auto", cuda_available=False) == "gloo"
