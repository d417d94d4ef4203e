"""Every objective on the same data, backbone, seeds and training budget: a mean ± std table and pictures.

``compare_objectives`` trains one run per (objective, seed) from a base config, each with the same epochs (and
``max_train_seconds``, if set), and scores the held-out classes of that seed's split; baselines (no
training) are scored once per seed. Each run also scores its closed set (held-out items of the training
classes, ``training.evaluation.closed_set``): the table's "closed" columns, "–" for runs without one (reports
written before closed-set evaluation existed). ``summarise`` folds the per-seed scores into mean and standard
deviation and ``markdown_table`` prints them, with each method's MAP@R minus the first objective's on the
same seed (``paired_differences``); ``angle_table`` gives the paper's angle statistics. ``compare_objectives`` also
writes ``compare.json``, ``compare.md`` and the PNG pictures into the output folder.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arcsearch.index.bundle import write_json_atomic
from arcsearch.training.config import TrainConfig
from arcsearch.training.evaluation.closed_set import closed_set_methods
from arcsearch.training.evaluation.figures import write_compare_figures
from arcsearch.training.experiments.reuse import reusable_report
from arcsearch.training.experiments.tuning import TrainRun, apply_overrides

logger = logging.getLogger(__name__)

TABLE_METRICS = (("map_at_r", "MAP@R"), ("r_precision", "R-prec"), ("precision_at_1", "P@1"),
                 ("verification_accuracy_mean", "verif. acc"), ("tar_at_far_1e-3", "TAR@FAR=1e-3"),
                 ("closed_map_at_r", "closed MAP@R"), ("closed_precision_at_1", "closed P@1"))
CLOSED_PREFIX = "closed_"  # closed-set metrics in a summary: closed_map_at_r, ...
TABLE_NOTE = ("MAP@R, R-prec, P@1, verif. acc, TAR: open set (held-out classes). closed MAP@R, closed P@1: "
              "closed set (held-out items of the training classes, each searched among the others).")
ANGLE_METRICS = (("angle_to_centre_deg", "sample → own centre"),
                 ("angle_nearest_centre_deg", "centre → nearest centre"),
                 ("angle_min_between_centres_deg", "min between centres"),
                 ("angle_positive_pairs_deg", "positive pairs"), ("angle_negative_pairs_deg", "negative pairs"))


def _flatten(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of one method's score, nested verification values lifted to the top level."""
    flat = {key: float(value) for key, value in result.items() if isinstance(value, (int, float))}
    for key, value in (result.get("verification") or {}).items():
        if isinstance(value, (int, float)):
            flat[key if key.startswith("tar_") else f"verification_{key}"] = float(value)
    for key, value in (result.get("angles") or {}).items():
        flat[f"angle_{key}"] = float(value)
    return flat


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``runs``: one report per (objective, seed), each with ``methods`` (and ``closed_set``, whose metrics get
    the ``CLOSED_PREFIX``). Returns method -> metric -> {mean, std, n} over seeds (population std; n counts
    runs that reported the metric, NaN values excluded)."""
    values: dict[str, dict[str, list[float]]] = {}
    for report in runs:
        for method, result in report["methods"].items():
            for key, value in _flatten(result).items():
                values.setdefault(method, {}).setdefault(key, []).append(value)
        for method, result in closed_set_methods(report).items():
            for key, value in _flatten(result).items():
                values.setdefault(method, {}).setdefault(CLOSED_PREFIX + key, []).append(value)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for method, metrics in values.items():
        for key, seq in metrics.items():
            finite = [v for v in seq if not math.isnan(v)]
            summary.setdefault(method, {})[key] = {
                "mean": float(np.mean(finite)) if finite else math.nan,
                "std": float(np.std(finite)) if finite else math.nan, "n": len(finite)}
    return summary


def paired_differences(runs: Sequence[dict[str, Any]], reference: str,
                       metric: str = "map_at_r") -> dict[str, dict[str, float]]:
    """Per method, ``metric`` minus the ``reference`` method's on the same seed (the same held-out split):
    {mean, better (seeds where the method beat the reference), n}. Seeds lacking either are skipped.

    Seeds draw different held-out classes, so the spread over seeds is mostly the split's; the paired
    difference removes it and is what says whether one objective beats another."""
    by_seed: dict[int, dict[str, float]] = {}
    for report in runs:
        for method, result in report["methods"].items():
            value = result.get(metric)
            if value is not None and not math.isnan(value):
                by_seed.setdefault(report["seed"], {})[method] = float(value)
    deltas: dict[str, list[float]] = {}
    for scores in by_seed.values():
        if reference in scores:
            for method, value in scores.items():
                deltas.setdefault(method, []).append(value - scores[reference])
    return {method: {"mean": float(np.mean(seq)), "better": sum(d > 0 for d in seq), "n": len(seq)}
            for method, seq in deltas.items()}


def markdown_table(summary: dict[str, dict[str, dict[str, float]]], *, order: Sequence[str] = (),
                   paired: dict[str, dict[str, float]] | None = None, reference: str = "") -> str:
    """A markdown table, a row per method (``order`` first, then the rest), ``mean ± std`` per metric and
    the mean training seconds; sorted rows are not implied, the best MAP@R is in bold. With ``paired``
    (from ``paired_differences``) a column gives each method's MAP@R minus ``reference``'s, seed by seed."""
    methods = [m for m in order if m in summary] + sorted(m for m in summary if m not in order)
    best = max((summary[m].get("map_at_r", {}).get("mean", -math.inf) for m in methods), default=math.nan)
    paired_label = [f"Δ MAP@R vs {reference.removesuffix('_finetuned')} (seeds better)"] if paired else []
    header = "| method | " + " | ".join([label for _, label in TABLE_METRICS] + paired_label) + " | train s | seeds |"
    lines = [header, "|---|" + "---|" * (len(TABLE_METRICS) + len(paired_label) + 2)]
    for method in methods:
        cells = []
        for key, _ in TABLE_METRICS:
            stat = summary[method].get(key)
            cell = "–" if stat is None or math.isnan(stat["mean"]) else f"{stat['mean']:.3f} ± {stat['std']:.3f}"
            if key == "map_at_r" and stat is not None and stat["mean"] == best:
                cell = f"**{cell}**"
            cells.append(cell)
        if paired:
            delta = paired.get(method)
            cells.append("–" if delta is None or method == reference
                         else f"{delta['mean']:+.3f} ({delta['better']}/{delta['n']})")
        seconds = summary[method].get("train_seconds")
        runs = summary[method].get("map_at_r", {}).get("n", 0)
        cells += ["–" if seconds is None else f"{seconds['mean']:.0f}", str(runs)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def angle_table(summary: dict[str, dict[str, dict[str, float]]], *, order: Sequence[str] = ()) -> str:
    """The ArcFace paper's angle statistics of the held-out embeddings, mean over seeds, in degrees: a
    markdown row per method (``order`` first) that has them (baselines without dense embeddings have none)."""
    methods = [m for m in order if m in summary] + sorted(m for m in summary if m not in order)
    lines = ["| method | " + " | ".join(label for _, label in ANGLE_METRICS) + " |",
             "|---|" + "---|" * len(ANGLE_METRICS)]
    for method in methods:
        stats = [summary[method].get(key) for key, _ in ANGLE_METRICS]
        if all(stat is None for stat in stats):
            continue
        cells = ["–" if stat is None or math.isnan(stat["mean"]) else f"{stat['mean']:.1f}" for stat in stats]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_objectives(base: TrainConfig, train: TrainRun, *, objectives: Sequence[str], seeds: Sequence[int],
                       out_dir: Path, overrides: dict[str, dict[str, Any]] | None = None,
                       reuse_dir: Path | None = None) -> dict[str, Any]:
    """Train ``base`` once per objective and seed with ``train(config, export=False, baselines=...)`` (the
    modality's ``training.run`` function), each objective with its ``overrides`` (knob -> value, as
    ``apply_overrides`` takes them; e.g. the tuned points); returns and writes {summary, runs, table}
    (the objectives under the key ``losses``, each run's under ``loss``, as the ``--loss`` flag names them).
    A run of an earlier comparison in ``reuse_dir`` with the very same configuration is taken as it is
    instead of trained again (runs on cpu are deterministic)."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(objectives))
    if unknown:
        raise ValueError(f"overrides for loss(es) not compared (--losses): {unknown}")
    out_dir = Path(out_dir)
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        for position, objective in enumerate(objectives):
            config = dataclasses.replace(apply_overrides(base, overrides.get(objective, {})), objective=objective,
                                         seed=seed, out_dir=out_dir / "runs" / f"{objective}_seed{seed}")
            logger.info("compare: %s, seed %d (%d/%d)", objective, seed, len(runs) + 1, len(objectives) * len(seeds))
            report = reusable_report(reuse_dir, config, with_baselines=position == 0) if reuse_dir else None
            if report is None:
                report = train(config, export=False, baselines=position == 0)
            report["loss"], report["seed"] = objective, seed
            runs.append(report)
    summary = summarise(runs)
    order = [f"{objective}_finetuned" for objective in objectives]
    table = markdown_table(summary, order=order, paired=paired_differences(runs, order[0]), reference=order[0])
    angles = angle_table(summary, order=order)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"losses": list(objectives), "seeds": list(seeds), "max_train_seconds": base.max_train_seconds,
              "overrides": overrides, "summary": summary, "table": table, "angle_table": angles,
              "figures": write_compare_figures(runs, out_dir), "runs": runs}
    write_json_atomic(out_dir / "compare.json", result)
    (out_dir / "compare.md").write_text(f"{table}\n\n{TABLE_NOTE}\n\nAngles of the held-out embeddings, degrees "
                                        f"(mean over seeds):\n\n{angles}\n", encoding="utf-8")
    logger.info("held-out classes, mean ± std over seeds %s:\n%s\n%s", list(seeds), table, angles)
    return result
