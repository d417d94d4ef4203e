"""Training step time of every objective, as a ratio to plain softmax, and ours against pytorch-metric-learning.

Two settings, each timed in interleaved rounds (every contender once per round, medians over rounds), so
that the drift of a shared machine hits all contenders alike:
- ``head``: the objective alone (forward + backward + AdamW step) on fixed (N, D) embeddings with many
  classes, where the loss's own cost is visible;
- ``image`` / ``text``: a whole training step of the default encoder (MobileNetV2 at 112 px, batch 32;
  all-MiniLM-L6-v2, batch 64 real glosses) with each objective; also samples per second.

Usage (after ``arcsearch prepare``):
    .venv/bin/python -m bench.loss_step_time --rounds 15 --out artifacts/bench/loss_step_time.json
Targets: ArcFace under 1.10x softmax; our ArcFace step no slower than pml's ArcFaceLoss step.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from arcsearch.index.corpus import read_text_file
from arcsearch.training.engine.optimiser import make_optimiser
from arcsearch.training.objectives.base import Objective, ObjectiveOutput
from arcsearch.training.objectives.params import ObjectiveParams
from arcsearch.training.objectives.registry import OBJECTIVES, build_objective

logger = logging.getLogger(__name__)
CPU = torch.device("cpu")

Step = Callable[[], None]


class PmlArcFace(Objective):
    """pytorch-metric-learning's ArcFaceLoss behind our interface (its margin is in degrees)."""

    def __init__(self, num_classes: int, dim: int, params: ObjectiveParams) -> None:
        super().__init__()
        from pytorch_metric_learning.losses import ArcFaceLoss

        self.loss = ArcFaceLoss(num_classes, dim, margin=math.degrees(params.margin_rad), scale=params.scale)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> ObjectiveOutput:
        return ObjectiveOutput(self.loss(embeddings, labels))


def time_rounds(steps: dict[str, Step], *, rounds: int, warmup: int,
                device: torch.device = CPU) -> dict[str, list[float]]:
    """Seconds per call of each step, ``rounds`` times after ``warmup`` untimed rounds; every round runs all
    steps, in an order rotated by one each round, so that no step always runs first or after the same one
    (a fixed order showed a 7% bias between positions). On cuda each step is timed to its completion."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            steps[name]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - started)
    return times


def training_step(encoder: nn.Module, objective: Objective, inputs: Any, labels: torch.Tensor,
                  embed: Callable[[Any], torch.Tensor]) -> Step:
    """A closure doing one forward + backward + AdamW step of ``encoder`` and ``objective``."""
    optimizer = make_optimiser(encoder, objective, lr=1e-5, head_lr=1e-3, weight_decay=1e-4)

    def step() -> None:
        loss = objective(embed(inputs), labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def objectives(num_classes: int, dim: int, *, with_pml: bool) -> dict[str, Objective]:
    """Every registered objective (seeded, same init order), plus pml's ArcFaceLoss when asked."""
    built: dict[str, Objective] = {}
    for name in OBJECTIVES:
        torch.manual_seed(0)
        built[name] = build_objective(name, num_classes, dim, ObjectiveParams())
    if with_pml:
        built["pml_arcface"] = PmlArcFace(num_classes, dim, ObjectiveParams())
    return built


def pk_labels(batch_size: int, num_classes: int, per_class: int = 4) -> torch.Tensor:
    """(batch_size,) labels with ``per_class`` samples of each class (triplet losses need positives)."""
    return (torch.arange(batch_size) // per_class) % num_classes


def head_steps(*, batch_size: int, dim: int, num_classes: int, device: torch.device = CPU) -> dict[str, Step]:
    """Objective-only steps: a fixed trainable (N, D) embedding matrix stands in for the encoder."""
    labels = pk_labels(batch_size, num_classes)
    steps = {}
    for name, objective in objectives(num_classes, dim, with_pml=True).items():
        torch.manual_seed(1)
        encoder = nn.Linear(dim, dim, bias=False).to(device)
        inputs = torch.randn(batch_size, dim).to(device)
        steps[name] = training_step(encoder, objective.to(device), inputs, labels.to(device), encoder)
    return steps


def image_steps(data_dir: Path, *, batch_size: int, num_classes: int,
                device: torch.device = CPU) -> dict[str, Step]:
    """Whole steps of the default image encoder (pretrained MobileNetV2, 112 px, 128-d) per objective."""
    from arcsearch.training.backbones import build_image_encoder

    labels = pk_labels(batch_size, num_classes).to(device)
    pixels = torch.randn(batch_size, 3, 112, 112).to(device)
    steps = {}
    for name, objective in objectives(num_classes, 128, with_pml=True).items():
        encoder = build_image_encoder("mobilenet_v2", embedding_dim=128,
                                      checkpoint=data_dir / "pretrained" / "mobilenet_v2-b0353104.pth").to(device)
        encoder.train()
        steps[name] = training_step(encoder, objective.to(device), pixels, labels, encoder)
    return steps


def text_steps(data_dir: Path, *, batch_size: int, num_classes: int, device: torch.device = CPU) -> dict[str, Step]:
    """Whole steps of the default text encoder (all-MiniLM-L6-v2) on real glosses, per objective."""
    from arcsearch.training.fitting.text import load_sentence_model, tokenize

    texts = [item.text for item in read_text_file(data_dir / "wordnet_glosses.jsonl")[:batch_size]]
    labels = pk_labels(batch_size, num_classes).to(device)
    steps = {}
    for name, objective in objectives(num_classes, 384, with_pml=True).items():
        model = load_sentence_model(str(data_dir / "pretrained" / "all-MiniLM-L6-v2"), device=device)
        model.train()
        features = tokenize(model, texts, device)
        steps[name] = training_step(model, objective.to(device), features, labels,
                                    lambda f, m=model: m(dict(f))["sentence_embedding"])
    return steps


def summarise(times: dict[str, list[float]], *, batch_size: int) -> dict[str, dict[str, float]]:
    """Median ms per step, samples per second and the ratio to softmax's median, per contender."""
    base = statistics.median(times["softmax"])
    return {name: {"median_ms": 1000 * statistics.median(t), "samples_per_s": batch_size / statistics.median(t),
                   "ratio_to_softmax": statistics.median(t) / base,
                   "ratio_to_pml_arcface": statistics.median(t) / statistics.median(times["pml_arcface"])}
            for name, t in times.items()}


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """One table: a row per contender; per setting median ms, ratio to softmax and samples per second."""
    settings = list(results)
    head = "| objective | " + " | ".join(f"{s} ms | {s} ×softmax | {s} samples/s" for s in settings) + " |"
    rule = "|---|" + "---|---|---|" * len(settings)

    def cells(name: str, setting: str) -> str:
        row = results[setting][name]
        return f"{row['median_ms']:.1f} | {row['ratio_to_softmax']:.2f} | {row['samples_per_s']:,.0f}"

    rows = [f"| {name} | " + " | ".join(cells(name, s) for s in settings) + " |" for name in results[settings[0]]]
    ours_vs_pml = ", ".join(f"{s} {results[s]['arcface']['ratio_to_pml_arcface']:.2f}×" for s in settings)
    return "\n".join([head, rule, *rows, "", f"arcface step / pml_arcface step: {ours_vs_pml}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=["head", "image", "text"],
                        choices=["head", "image", "text"])
    parser.add_argument("--head-classes", type=int, default=10_000)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (steps are timed to completion)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    builders = {"head": (lambda: head_steps(batch_size=256, dim=128, num_classes=args.head_classes,
                                            device=device), 256),
                "image": (lambda: image_steps(args.data_dir, batch_size=32, num_classes=30, device=device), 32),
                "text": (lambda: text_steps(args.data_dir, batch_size=64, num_classes=450, device=device), 64)}
    results = {}
    for setting in args.settings:
        build, batch_size = builders[setting]
        logger.info("timing %s steps (%d rounds)", setting, args.rounds)
        results[setting] = summarise(time_rounds(build(), rounds=args.rounds, warmup=args.warmup, device=device),
                                     batch_size=batch_size)
    table = markdown(results)
    logger.info("step time on %s, medians over %d interleaved rounds (torch %s, %d threads):\n%s", device, args.rounds,
                torch.__version__, torch.get_num_threads(), table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rounds": args.rounds, "results": results, "table": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
