"""The step-time bench: every objective timed in rotated rounds, ratios to softmax and to pml's ArcFace."""

from __future__ import annotations

from arcsearch.training.objectives.registry import OBJECTIVES
from bench.loss_step_time import head_steps, markdown, summarise, time_rounds


def test_rounds_rotate_the_order_and_every_step_trains_its_own_weights() -> None:
    calls: list[str] = []
    steps = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    times = time_rounds(steps, rounds=3, warmup=1)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_head_steps_of_every_objective_and_pml_summarised_against_softmax() -> None:
    steps = head_steps(batch_size=32, dim=16, num_classes=20)
    assert set(steps) == set(OBJECTIVES) | {"pml_arcface"}
    results = {"head": summarise(time_rounds(steps, rounds=2, warmup=1), batch_size=32)}
    assert results["head"]["softmax"]["ratio_to_softmax"] == 1.0
    assert results["head"]["pml_arcface"]["ratio_to_pml_arcface"] == 1.0
    assert all(row["median_ms"] > 0 and row["samples_per_s"] > 0 for row in results["head"].values())
    table = markdown(results).splitlines()
    assert len([line for line in table if line.startswith("| ")]) == 1 + len(steps)
    assert table[-1].startswith("arcface step / pml_arcface step: head ")
