"""Partial FC against the one-process ``arcface`` objective: 2 gloo ranks on loopback, float64, 1e-10."""

from __future__ import annotations

import datetime
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from arcsearch.training.objectives.params import ObjectiveParams
from arcsearch.training.objectives.partial_fc import PartialFCArcFace, shard_bounds
from arcsearch.training.objectives.registry import build_objective, make_objective

NUM_CLASSES, DIM, IN_DIM = 41, 8, 5
LOCAL_SIZES = (7, 5)  # uneven on purpose: the all-gather pads and trims
WORLD = len(LOCAL_SIZES)
PARAMS = ObjectiveParams(scale=30.0, margin_rad=0.5)
MARGIN_FRACTION = 0.7
RATES = (1.0, 0.5)
TOL = 1e-10
SPAWN_DEADLINE_S = 120.0


def _data() -> dict[str, Tensor]:
    """A global batch of 12 inputs of a bias-free linear encoder, its weight, labels, class centres."""
    gen = torch.Generator().manual_seed(0)
    n = sum(LOCAL_SIZES)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    labels[5], labels[9] = labels[0], labels[1]  # repeated classes, within a rank and across ranks
    return {"inputs": torch.randn(n, IN_DIM, generator=gen, dtype=torch.float64),
            "encoder": torch.randn(DIM, IN_DIM, generator=gen, dtype=torch.float64),
            "labels": labels,
            "centres": torch.randn(NUM_CLASSES, DIM, generator=gen, dtype=torch.float64)}


def _rows(rank: int) -> slice:
    start = sum(LOCAL_SIZES[:rank])
    return slice(start, start + LOCAL_SIZES[rank])


def _step(objective: PartialFCArcFace, data: dict[str, Tensor], rows: slice) -> dict[str, Tensor]:
    """One forward/backward of ``objective`` on the given rows; the loss and all gradients."""
    objective.init_from_centres(data["centres"])
    objective.margin_fraction = MARGIN_FRACTION
    encoder = data["encoder"].clone().requires_grad_(True)
    embeddings = data["inputs"][rows] @ encoder.T
    embeddings.retain_grad()
    output = objective(embeddings, data["labels"][rows])
    output.loss.backward()
    assert output.logits is None
    return {"loss": output.loss.detach(), "embedding_grad": embeddings.grad, "weight_grad": objective.weight.grad,
            "encoder_grad": encoder.grad, "sampled": objective.last_sampled}


def _worker(rank: int, port: int, data_path: str, out_dir: str) -> None:
    """One gloo rank: both sample rates, encoder grads averaged as DDP does, the gathered W; saved to a file."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        data = torch.load(data_path)
        results: dict[str, object] = {}
        for rate in RATES:
            objective = PartialFCArcFace(NUM_CLASSES, DIM, scale=PARAMS.scale, margin_rad=PARAMS.margin_rad,
                                         sample_rate=rate).double()
            step = _step(objective, data, _rows(rank))
            dist.all_reduce(step["encoder_grad"])  # what DDP does to the encoder's grads: mean over ranks
            step["encoder_grad"] /= WORLD
            results[f"rate{rate}"] = step
        results["bounds"] = torch.tensor([objective.start, objective.end])
        results["slice"] = objective.class_weights().clone()
        results["gathered"] = objective.gather_class_weights()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reference(data: dict[str, Tensor], columns: Tensor | None = None) -> dict[str, Tensor]:
    """The one-process ``arcface`` objective on the whole batch, restricted to ``columns`` (sorted class ids)."""
    columns = torch.arange(NUM_CLASSES) if columns is None else columns
    objective = build_objective("arcface", len(columns), DIM, PARAMS).double()
    objective.init_from_centres(data["centres"][columns])
    objective.margin_fraction = MARGIN_FRACTION
    encoder = data["encoder"].clone().requires_grad_(True)
    embeddings = data["inputs"] @ encoder.T
    embeddings.retain_grad()
    loss = objective(embeddings, torch.searchsorted(columns, data["labels"])).loss
    loss.backward()
    return {"loss": loss.detach(), "embedding_grad": embeddings.grad, "weight_grad": objective.weight.grad,
            "encoder_grad": encoder.grad}


@pytest.fixture(scope="module")
def data() -> dict[str, Tensor]:
    return _data()


@pytest.fixture(scope="module")
def ranks(data: dict[str, Tensor], tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The saved results of 2 spawned gloo ranks, each given its half of the global batch."""
    tmp = tmp_path_factory.mktemp("partial_fc")
    torch.save(data, tmp / "data.pt")
    context = mp.spawn(_worker, args=(_free_port(), str(tmp / "data.pt"), str(tmp)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + SPAWN_DEADLINE_S
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD} ranks did not finish within {SPAWN_DEADLINE_S} s")
    return [torch.load(tmp / f"rank{rank}.pt") for rank in range(WORLD)]


def _assert_close(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=TOL)


def test_sharded_loss_and_gradients_equal_full_arcface(ranks: list[dict], data: dict[str, Tensor]) -> None:
    ref = _reference(data)
    assert [tuple(r["bounds"].tolist()) for r in ranks] == [(0, 21), (21, 41)]
    for rank, result in enumerate(ranks):
        step, (start, end) = result["rate1.0"], result["bounds"].tolist()
        _assert_close(step["loss"], ref["loss"])
        _assert_close(step["weight_grad"], ref["weight_grad"][start:end])
        # own rows get world_size x the global-mean gradient, so DDP's mean over ranks gives the 1-process grads
        _assert_close(step["embedding_grad"], WORLD * ref["embedding_grad"][_rows(rank)])
        _assert_close(step["encoder_grad"], ref["encoder_grad"])
        assert step["sampled"].tolist() == list(range(start, end))


def test_sampled_loss_equals_arcface_on_the_sampled_classes(ranks: list[dict], data: dict[str, Tensor]) -> None:
    columns = torch.cat([r["rate0.5"]["sampled"] for r in ranks])
    assert set(data["labels"].tolist()) <= set(columns.tolist()), "every positive class must be sampled"
    ref = _reference(data, columns)
    offset = 0
    for rank, result in enumerate(ranks):
        step, (start, end) = result["rate0.5"], result["bounds"].tolist()
        sampled = step["sampled"]
        assert len(sampled) == round(0.5 * (end - start)) < end - start
        assert torch.all(sampled[1:] > sampled[:-1]) and start <= int(sampled[0]) and int(sampled[-1]) < end
        _assert_close(step["loss"], ref["loss"])
        expected = torch.zeros(end - start, DIM, dtype=torch.float64)  # unsampled rows get no gradient
        expected[sampled - start] = ref["weight_grad"][offset:offset + len(sampled)]
        _assert_close(step["weight_grad"], expected)
        _assert_close(step["embedding_grad"], WORLD * ref["embedding_grad"][_rows(rank)])
        _assert_close(step["encoder_grad"], ref["encoder_grad"])
        offset += len(sampled)
    assert not torch.allclose(ref["loss"], _reference(data)["loss"]), "sampling should change the loss"


def test_each_rank_holds_its_slice_and_gathers_the_whole_matrix(ranks: list[dict], data: dict[str, Tensor]) -> None:
    full = nn.functional.normalize(data["centres"], dim=1)
    for result in ranks:
        start, end = result["bounds"].tolist()
        _assert_close(result["slice"], full[start:end])
        _assert_close(result["gathered"], full)


def test_single_process_equals_full_arcface(data: dict[str, Tensor]) -> None:
    objective = PartialFCArcFace(NUM_CLASSES, DIM, scale=PARAMS.scale, margin_rad=PARAMS.margin_rad).double()
    assert objective.group is None and (objective.start, objective.end) == (0, NUM_CLASSES)
    step, ref = _step(objective, data, slice(None)), _reference(data)
    for key in ("loss", "weight_grad", "embedding_grad", "encoder_grad"):
        _assert_close(step[key], ref[key])
    _assert_close(objective.gather_class_weights(), nn.functional.normalize(data["centres"], dim=1))


def test_single_process_sampling_is_seeded_and_keeps_the_positives(data: dict[str, Tensor]) -> None:
    def sampled(seed: int) -> dict[str, Tensor]:
        objective = PartialFCArcFace(NUM_CLASSES, DIM, scale=PARAMS.scale, margin_rad=PARAMS.margin_rad,
                                     sample_rate=0.5, seed=seed).double()
        return _step(objective, data, slice(None))

    first, again, other = sampled(3), sampled(3), sampled(4)
    assert torch.equal(first["sampled"], again["sampled"])
    assert not torch.equal(first["sampled"], other["sampled"])
    assert set(data["labels"].tolist()) <= set(first["sampled"].tolist())
    assert len(first["sampled"]) == round(0.5 * NUM_CLASSES)
    ref = _reference(data, first["sampled"])
    _assert_close(first["loss"], ref["loss"])
    _assert_close(first["weight_grad"][first["sampled"]], ref["weight_grad"])
    _assert_close(first["embedding_grad"], ref["embedding_grad"])


def test_a_training_run_seeds_the_negative_sampling_with_its_own_seed(data: dict[str, Tensor]) -> None:
    def sampled(seed: int) -> Tensor:
        objective = make_objective("partial_fc_arcface", NUM_CLASSES, DIM, ObjectiveParams(sample_rate=0.5), seed=seed)
        return _step(objective.double(), data, slice(None))["sampled"]

    direct = _step(PartialFCArcFace(NUM_CLASSES, DIM, sample_rate=0.5, seed=3).double(), data, slice(None))
    assert torch.equal(sampled(3), direct["sampled"])
    assert not torch.equal(sampled(3), sampled(4))


def test_rejects_bad_arguments() -> None:
    for rate in (0.0, 1.5):
        with pytest.raises(ValueError, match="sample_rate"):
            PartialFCArcFace(NUM_CLASSES, DIM, sample_rate=rate)
    objective = PartialFCArcFace(NUM_CLASSES, DIM)
    with pytest.raises(ValueError, match="labels"):
        objective(torch.randn(2, DIM), torch.tensor([0, NUM_CLASSES]))
    with pytest.raises(ValueError, match="centres"):
        objective.init_from_centres(torch.randn(NUM_CLASSES - 1, DIM))


def test_shard_bounds_cover_the_classes_in_near_equal_contiguous_slices() -> None:
    for num_classes, world in ((41, 2), (10, 3), (7, 7), (100, 8)):
        bounds = [shard_bounds(num_classes, world, rank) for rank in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == num_classes
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        sizes = [end - start for start, end in bounds]
        assert max(sizes) - min(sizes) <= 1
