"""Partial FC: ArcFace with the class-centre matrix W sharded across ranks and a distributed softmax.

Rank r of a process group of size R holds the rows of W for the contiguous classes [start_r, end_r)
(slice sizes differ by at most one). Each step every rank all-gathers the embeddings and labels of the
global batch, computes cosines against its own slice, applies the ArcFace margin to the targets it owns,
and the cross-entropy's max, sum of exponentials and target logit are combined with all-reduces, so no
rank ever holds the (N, C) logits or the whole of W. With ``sample_rate`` < 1 each rank uses, per step,
all positive classes it owns plus a random subset of its other classes (negative-centre sampling).

Gradient conventions (``encoder_grad_average=True``, the default):

* ``loss`` is the mean over the global batch, the same value on every rank (log it on any rank).
* W's slice gets exactly the gradient of that loss, as in a one-process run; the slice is never
  all-reduced (``handles_distribution``: the DDP loop neither wraps this objective nor averages its grads).
* Each rank's own embeddings get R times the gradient of the global mean loss. DDP averages the encoder's
  gradients over the R ranks, so after that the encoder's gradients equal the one-process run's on the
  global batch. With ``encoder_grad_average=False`` the factor R is left out (for callers that sum).

Optimiser note for ``sample_rate`` < 1: unsampled rows of W get a zero gradient. Plain SGD (no momentum, no
weight decay) leaves them as they are; AdamW, or SGD with momentum, still moves them by their stale first
moment (which decays by beta1 per step) and by any weight decay. The insightface implementation avoids this
by stepping only the sampled rows; here the loop's AdamW (head weight decay 0) lets unsampled rows drift by
their decaying momentum, which is harmless in practice but is not the exact Partial FC update.

``state_dict`` holds the local slice only: each rank saves and restores its own.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from arcsearch.training.objectives.base import Objective, ObjectiveOutput
from arcsearch.training.objectives.margins import arcface_logits

logger = logging.getLogger(__name__)

ProcessGroup = dist.ProcessGroup if dist.is_available() else object


def shard_bounds(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, end) of the classes that ``rank`` holds when ``num_classes`` are split into ``world_size``
    contiguous slices whose sizes differ by at most one (the first ``num_classes % world_size`` get one more)."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _gather_sizes(n: int, group: ProcessGroup, device: torch.device) -> list[int]:
    """Row counts of all ranks of ``group``, in rank order."""
    size = torch.tensor([n], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, size, group=group)
    return [int(s) for s in sizes]


def _gather_rows(x: Tensor, sizes: list[int], group: ProcessGroup) -> Tensor:
    """Concatenate the (sizes[r], ...) tensors of all ranks in rank order (pads to the largest, then trims)."""
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


class _AllGatherRows(torch.autograd.Function):
    """Differentiable all-gather of (n_r, D) rows: backward sums the grads of all ranks (all-reduce) and
    returns this rank's rows, times ``grad_scale``."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], group: ProcessGroup, grad_scale: float) -> Tensor:
        ctx.sizes, ctx.group, ctx.grad_scale = sizes, group, grad_scale
        return _gather_rows(x, sizes, group)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        rank = dist.get_rank(ctx.group)
        start = sum(ctx.sizes[:rank])
        return grad[start:start + ctx.sizes[rank]] * ctx.grad_scale, None, None, None


def _all_reduce(x: Tensor, op: str, group: ProcessGroup | None) -> Tensor:
    """In place, over ``group`` with ``op`` "max" or "sum"; a no-op for a single process (``group`` None)."""
    if group is not None:
        dist.all_reduce(x, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=group)
    return x


class _DistributedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of (N, C_local) logit slices whose columns, over all ranks, make the full softmax.

    ``target`` (N,) holds the local column of each row's class on the rank that owns it and -1 elsewhere.
    Backward gives (softmax - one_hot) / N on the local columns, the exact gradient of the full loss.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, group: ProcessGroup | None) -> Tensor:
        row_max = _all_reduce(logits.max(dim=1).values, "max", group)
        exp = (logits - row_max.unsqueeze(1)).exp_()
        sum_exp = _all_reduce(exp.sum(dim=1), "sum", group)
        owned = target >= 0
        target_logit = torch.zeros_like(row_max)
        rows = owned.nonzero().squeeze(1)
        target_logit[rows] = logits[rows, target[rows]] - row_max[rows]
        target_logit = _all_reduce(target_logit, "sum", group)
        ctx.save_for_backward(exp.div_(sum_exp.unsqueeze(1)), target)
        return (sum_exp.log() - target_logit).mean()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None, None]:
        softmax, target = ctx.saved_tensors
        grad = softmax.clone()
        rows = (target >= 0).nonzero().squeeze(1)
        grad[rows, target[rows]] -= 1.0
        return grad * (grad_output / grad.shape[0]), None, None


def _default_group() -> ProcessGroup | None:
    if dist.is_available() and dist.is_initialized():
        return dist.group.WORLD
    return None


class PartialFCArcFace(Objective):
    """ArcFace on W sharded over the ranks of ``group`` (see the module docstring), optional negative sampling.

    ``group``: the process group to shard over; None means torch.distributed's WORLD when it is initialised
    at construction, else a single rank that holds all of W (then this equals the ``arcface`` objective).
    ``sample_rate`` in (0, 1]: share of each rank's classes used per step (all owned positives always are);
    the draw uses a CPU ``torch.Generator`` seeded with ``seed + rank`` (attribute ``generator``).
    After each forward ``last_sampled`` holds the (K_r,) sorted global class ids of this rank's columns.
    """

    handles_distribution = True

    def __init__(self, num_classes: int, embedding_dim: int, *, scale: float = 30.0, margin_rad: float = 0.5,
                 easy_margin: bool = False, sample_rate: float = 1.0, group: ProcessGroup | None = None,
                 seed: int = 0, encoder_grad_average: bool = True) -> None:
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must lie in (0, 1], got {sample_rate}")
        self.group = group if group is not None else _default_group()
        self.world_size = dist.get_world_size(self.group) if self.group is not None else 1
        self.rank = dist.get_rank(self.group) if self.group is not None else 0
        if num_classes < max(2, self.world_size):
            raise ValueError(f"need at least max(2, world size {self.world_size}) classes, got {num_classes}")
        self.num_classes, self.embedding_dim = num_classes, embedding_dim
        self.scale, self.margin_rad, self.easy_margin = scale, margin_rad, easy_margin
        self.sample_rate, self.encoder_grad_average = sample_rate, encoder_grad_average
        self.start, self.end = shard_bounds(num_classes, self.world_size, self.rank)
        self.weight = nn.Parameter(torch.empty(self.end - self.start, embedding_dim))
        bound = math.sqrt(6.0 / (num_classes + embedding_dim))  # xavier_uniform's bound for the full (C, D) W
        nn.init.uniform_(self.weight, -bound, bound)
        self.generator = torch.Generator().manual_seed(seed + self.rank)
        self.last_sampled: Tensor | None = None

    def reseed(self, seed: int) -> None:
        """Draw negative centres from ``seed + rank`` from now on (the training run's seed)."""
        self.generator.manual_seed(seed + self.rank)

    def extra_repr(self) -> str:
        return (f"classes [{self.start}, {self.end}) of {self.num_classes}, rank {self.rank}/{self.world_size}, "
                f"scale={self.scale}, margin_rad={self.margin_rad}, sample_rate={self.sample_rate}")

    def _gather(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """This rank's (n, D) embeddings and (n,) labels -> the global batch's (N, D) and (N,), in rank order."""
        if self.group is None:
            return embeddings, labels
        sizes = _gather_sizes(embeddings.shape[0], self.group, embeddings.device)
        scale = float(self.world_size) if self.encoder_grad_average else 1.0
        return (_AllGatherRows.apply(embeddings, sizes, self.group, scale),
                _gather_rows(labels, sizes, self.group))

    def _sample(self, local_labels: Tensor, owned: Tensor) -> Tensor:
        """(K,) sorted local columns to use this step: all owned positives plus random others, K ~ rate * C_r."""
        num_local = self.end - self.start
        device = self.weight.device
        keep = max(1, round(self.sample_rate * num_local))
        if keep >= num_local:
            return torch.arange(num_local, device=device)
        positives = torch.unique(local_labels[owned])
        if positives.numel() >= keep:
            return positives
        score = torch.rand(num_local, generator=self.generator).to(device)
        score[positives] = 2.0  # above every uniform draw, so the top-k always holds the positives
        return score.topk(keep).indices.sort().values

    def forward(self, embeddings: Tensor, labels: Tensor) -> ObjectiveOutput:
        """(n, D) embeddings and (n,) int64 global class ids of this rank -> mean loss over the global batch.

        ``logits`` is None: no rank holds (n, C) logits, so the loop reports no head accuracy.
        """
        if embeddings.dim() != 2 or labels.shape != (embeddings.shape[0],):
            raise ValueError(f"expected embeddings (N, D) and labels (N,), got {tuple(embeddings.shape)} "
                             f"and {tuple(labels.shape)}")
        all_embeddings, all_labels = self._gather(embeddings, labels)
        if all_labels.numel() and (int(all_labels.min()) < 0 or int(all_labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        owned = (all_labels >= self.start) & (all_labels < self.end)
        local_labels = all_labels - self.start  # meaningful where owned
        weight = self.weight
        if self.sample_rate < 1.0:
            columns = self._sample(local_labels, owned)
            weight = self.weight[columns]
            local_labels = torch.searchsorted(columns, local_labels.contiguous())
        else:
            columns = torch.arange(self.end - self.start, device=self.weight.device)
        self.last_sampled = columns + self.start
        cosine = nn.functional.linear(nn.functional.normalize(all_embeddings, dim=1),
                                      nn.functional.normalize(weight, dim=1))
        logits = cosine * self.scale
        rows = owned.nonzero().squeeze(1)
        if rows.numel():
            margin_logits = arcface_logits(cosine[rows], local_labels[rows], scale=self.scale,
                                           margin_rad=self.margin_rad * self.margin_fraction,
                                           easy_margin=self.easy_margin)
            logits = logits.index_put((rows,), margin_logits)
        target = torch.where(owned, local_labels, torch.full_like(local_labels, -1))
        return ObjectiveOutput(_DistributedCrossEntropy.apply(logits, target, self.group), None)

    def class_weights(self) -> Tensor:
        """This rank's (end - start, D) slice of W, rows for classes [start, end); see ``gather_class_weights``."""
        return self.weight.detach()

    @torch.no_grad()
    def gather_class_weights(self) -> Tensor:
        """The full (C, D) W on every rank (a collective: every rank must call it), e.g. for angle statistics."""
        if self.group is None:
            return self.weight.detach().clone()
        sizes = [b - a for a, b in (shard_bounds(self.num_classes, self.world_size, r)
                                    for r in range(self.world_size))]
        return _gather_rows(self.weight.detach(), sizes, self.group)

    @torch.no_grad()
    def init_from_centres(self, centres: Tensor) -> None:
        """Set this rank's slice of W to the normalised rows [start, end) of the global (C, D) ``centres``."""
        if centres.shape != (self.num_classes, self.embedding_dim):
            raise ValueError(f"centres of shape {tuple(centres.shape)} do not fit W "
                             f"({self.num_classes}, {self.embedding_dim})")
        local = centres[self.start:self.end].to(self.weight)
        self.weight.copy_(nn.functional.normalize(local, dim=1))
