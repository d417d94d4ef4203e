"""Each objective's own hyper-parameters, searched on validation classes with the budget of the comparison.

An objective is trained once per point of its grid and per seed, with ``validation_fraction`` of the training
classes kept back (``base.validation_fraction`` must be > 0). A point's score is the validation MAP@R of
the last epoch — what a comparison run, which never selects an epoch, would end with — averaged over
seeds. The held-out classes are not looked at. ``best_overrides`` gives each objective its best point, the
input of ``arcsearch compare --overrides``. Runs already in the output folder with the same configuration
are reused, so an interrupted or extended search continues where it stopped.

A point is a dict of overrides: names of ``TrainConfig`` fields (``lr``, ``head_lr``, ...) or of
``ObjectiveParams`` fields (``margin_rad``, ``scale``, ...). The empty point is the default configuration
and is always in the grid, so a tuned objective is never worse on validation than its defaults.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arcsearch.index.bundle import write_json_atomic
from arcsearch.training.config import TrainConfig
from arcsearch.training.experiments.reuse import reusable_report
from arcsearch.training.objectives.params import ObjectiveParams

logger = logging.getLogger(__name__)

Point = dict[str, float | int | bool | str]
TrainRun = Callable[..., dict[str, Any]]  # train_images or train_texts of training.run

# the default ({}) first, then moves of the objective's own knobs (margins, scale; the head's rate for the
# unnormalised softmax, the triplet margin) and, for every objective, three times the encoder's learning rate;
# ArcFace also with the P x K batches the triplet losses train on, so that a gain of arcface_triplet over
# arcface can be told apart from a gain of its sampler
FASTER_ENCODER: Point = {"lr_factor": 3.0}
DEFAULT_GRIDS: dict[str, list[Point]] = {
    "arcface": [{}, {"margin_rad": 0.3}, {"margin_rad": 0.7}, {"scale": 16.0}, {"sampler": "pk"}, FASTER_ENCODER],
    "cosface": [{}, {"cosface_margin": 0.2}, {"cosface_margin": 0.5}, {"scale": 16.0}, FASTER_ENCODER],
    "sphereface": [{}, {"sphereface_m": 1.2}, {"sphereface_m": 1.7}, {"scale": 16.0}, FASTER_ENCODER],
    "combined": [{}, {"combined_m2": 0.2, "combined_m3": 0.1}, {"combined_m2": 0.4, "combined_m3": 0.3},
                 {"scale": 16.0}, FASTER_ENCODER],
    "subcenter_arcface": [{}, {"subcenters": 2}, {"margin_rad": 0.3}, {"scale": 16.0}, FASTER_ENCODER],
    "softmax": [{}, {"head_lr": 3e-3}, {"head_lr": 1e-1}, FASTER_ENCODER],
    "norm_softmax": [{}, {"scale": 10.0}, {"scale": 16.0}, {"scale": 64.0}, FASTER_ENCODER],
    "triplet": [{}, {"triplet_margin": 0.1}, {"triplet_margin": 0.4}, FASTER_ENCODER],
    "arcface_triplet": [{}, {"triplet_weight": 0.5}, {"triplet_weight": 2.0}, {"margin_rad": 0.3}, FASTER_ENCODER],
}
OBJECTIVE_KNOBS = frozenset(f.name for f in dataclasses.fields(ObjectiveParams))
CONFIG_KNOBS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - {"objective", "objective_params", "seed"}


def apply_overrides(base: TrainConfig, point: Point) -> TrainConfig:
    """``base`` with the point's values: ``ObjectiveParams`` fields go into ``objective_params``, others replace config
    fields; ``lr_factor`` multiplies the encoder's ``lr``. ValueError names an unknown key."""
    unknown = set(point) - OBJECTIVE_KNOBS - CONFIG_KNOBS - {"lr_factor"}
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)}; use TrainConfig or ObjectiveParams "
                         "field names")
    knobs = {key: value for key, value in point.items() if key in OBJECTIVE_KNOBS}
    fields = {key: value for key, value in point.items() if key in CONFIG_KNOBS}
    if "lr_factor" in point:
        fields["lr"] = base.lr * float(point["lr_factor"])
    return dataclasses.replace(base, objective_params=dataclasses.replace(base.objective_params, **knobs), **fields)


def point_name(point: Point) -> str:
    """A short readable name: ``default`` or ``margin_rad=0.3,scale=16``."""
    return ",".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in sorted(point.items())) or "default"


def _last_validation_score(report: dict[str, Any]) -> float:
    scores = report["fit"].get("validation_map_at_r") or []
    return float(scores[-1]) if scores else math.nan


def tune_objectives(base: TrainConfig, train: TrainRun, *, objectives: Sequence[str], seeds: Sequence[int],
                    out_dir: Path, grids: dict[str, list[Point]] | None = None) -> dict[str, Any]:
    """Train every grid point of every objective on every seed with ``train(config, export=False,
    baselines=False)``; returns and writes ``tuning.json`` ({points: [{loss, point, ...}], best: {objective:
    point}}) and a markdown table ``tuning.md`` into ``out_dir``."""
    if base.validation_fraction <= 0:
        raise ValueError("tuning needs validation classes: set validation_fraction > 0 (e.g. 0.25)")
    grids = grids or DEFAULT_GRIDS
    missing = [objective for objective in objectives if objective not in grids]
    if missing:
        raise ValueError(f"no tuning grid for {missing}; grids exist for {sorted(grids)}")
    out_dir = Path(out_dir)
    total = sum(len(grids[objective]) for objective in objectives) * len(seeds)
    points: list[dict[str, Any]] = []
    for objective in objectives:
        for point in grids[objective]:
            scores = []
            for seed in seeds:
                name = f"{objective}_{point_name(point)}_seed{seed}".replace("=", "-").replace(",", "_")
                config = dataclasses.replace(apply_overrides(base, point), objective=objective, seed=seed,
                                             out_dir=out_dir / "runs" / name)
                logger.info("tune: %s %s, seed %d (%d/%d)", objective, point_name(point), seed,
                            len(points) * len(seeds) + len(scores) + 1, total)
                report = reusable_report(out_dir, config) or train(config, export=False, baselines=False)
                scores.append(_last_validation_score(report))
            points.append({"loss": objective, "point": point, "name": point_name(point), "scores": scores,
                           "mean": float(np.nanmean(scores)) if not all(map(math.isnan, scores)) else math.nan})
    best = best_overrides(points)
    table = tuning_table(points, best)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"losses": list(objectives), "seeds": list(seeds), "validation_fraction": base.validation_fraction,
              "points": points, "best": best, "table": table}
    write_json_atomic(out_dir / "tuning.json", result)
    write_json_atomic(out_dir / "tuned.json", best)
    (out_dir / "tuning.md").write_text(table + "\n", encoding="utf-8")
    logger.info("validation MAP@R per grid point (mean over seeds %s):\n%s", list(seeds), table)
    return result


def best_overrides(points: Sequence[dict[str, Any]]) -> dict[str, Point]:
    """Per objective (each entry's ``loss``), the point with the highest mean validation score (the earlier
    point on a tie, so the default wins ties); NaN scores never win."""
    best: dict[str, tuple[float, Point]] = {}
    for entry in points:
        score = entry["mean"]
        current = best.get(entry["loss"])
        if current is None or (not math.isnan(score) and (math.isnan(current[0]) or score > current[0])):
            best[entry["loss"]] = (score, entry["point"])
    return {objective: point for objective, (_, point) in best.items()}


def tuning_table(points: Sequence[dict[str, Any]], best: dict[str, Point]) -> str:
    """A markdown row per (objective, point): its validation MAP@R per seed and mean; the chosen point in bold."""
    lines = ["| loss | hyper-parameters | validation MAP@R (per seed) | mean |", "|---|---|---|---|"]
    for entry in points:
        chosen = best.get(entry["loss"]) == entry["point"]
        mean = "–" if math.isnan(entry["mean"]) else f"{entry['mean']:.3f}"
        per_seed = ", ".join("–" if math.isnan(s) else f"{s:.3f}" for s in entry["scores"])
        lines.append(f"| {entry['loss']} | {entry['name']} | {per_seed} | {f'**{mean}**' if chosen else mean} |")
    return "\n".join(lines)
