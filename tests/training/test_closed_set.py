"""Closed-set split (held-out items of the training classes) and closed-set retrieval metrics."""

from __future__ import annotations

import numpy as np
import pytest

from arcsearch.training.config import ConfigError, TextTrainConfig
from arcsearch.training.data.closed_set import closed_set_count, split_closed_set
from arcsearch.training.data.splits import SplitError
from arcsearch.training.evaluation.closed_set import ClosedSet, closed_set_metrics, closed_set_table


def _labels(sizes: dict[str, int]) -> list[str]:
    """Interleaved labels, ``sizes[name]`` items of each class."""
    pool = [name for name, size in sizes.items() for _ in range(size)]
    return [pool[i] for i in np.random.default_rng(7).permutation(len(pool))]


def test_count_has_a_floor_of_one_and_leaves_two_to_train_on() -> None:
    assert [closed_set_count(n, 0.2) for n in (1, 2, 3, 4, 7, 8, 100)] == [0, 0, 1, 1, 1, 2, 20]
    assert closed_set_count(10, 0.9) == 8  # capped: two items stay in training
    assert closed_set_count(100, 0.0) == 0
    for bad in (-0.1, 1.0):
        with pytest.raises(SplitError, match="closed-set fraction"):
            closed_set_count(10, bad)
    with pytest.raises(ConfigError, match="closed_set_fraction"):
        TextTrainConfig(texts_file="t.jsonl", out_dir="o", closed_set_fraction=1.0)


def test_split_partitions_the_training_positions_by_the_floor_rules() -> None:
    labels = _labels({"big": 50, "mid": 6, "three": 3, "two": 2, "one": 1, "other_class": 10})
    train = np.asarray([i for i, label in enumerate(labels) if label != "other_class"])
    kept, closed = split_closed_set(labels, train, fraction=0.2, seed=0)
    assert not set(kept) & set(closed) and sorted([*kept, *closed]) == sorted(train)
    assert list(kept) == sorted(kept) and list(closed) == sorted(closed)
    held = [labels[i] for i in closed]
    assert {name: held.count(name) for name in set(held)} == {"big": 10, "mid": 1, "three": 1}
    assert "other_class" not in held  # only the positions given are split


def test_split_is_seeded_and_each_class_choice_ignores_the_other_classes() -> None:
    labels = _labels({"a": 40, "b": 40, "c": 40})
    everything = np.arange(len(labels))
    first = split_closed_set(labels, everything, fraction=0.25, seed=3)
    again = split_closed_set(labels, everything, fraction=0.25, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    other_seed = split_closed_set(labels, everything, fraction=0.25, seed=4)[1]
    assert not np.array_equal(first[1], other_seed)
    without_c = np.asarray([i for i in everything if labels[i] != "c"])
    assert set(split_closed_set(labels, without_c, fraction=0.25, seed=3)[1]) == {
        i for i in first[1] if labels[i] != "c"}
    assert split_closed_set(labels, everything, fraction=0.0, seed=3)[1].size == 0


def _points(degrees: list[float]) -> np.ndarray:
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_closed_set_metrics_match_a_hand_computed_example() -> None:
    """Unit vectors at angles a1 0°, a2 10°, a3 40°, b1 23°, b2 90°, c1 180° (a lone item: never a query, but
    indexed). Nearest others by angle, R = other items of the class:
      a1: a2 (10) b1 (23) ...   R=2  hits [1, 0]  P@1 1  AP@R (1/1)/2 = 0.5   R-prec 1/2
      a2: a1 (10) b1 (13) ...   R=2  hits [1, 0]  P@1 1  AP@R 0.5             R-prec 1/2
      a3: b1 (17) a2 (30) ...   R=2  hits [0, 1]  P@1 0  AP@R (1/2)/2 = 0.25  R-prec 1/2
      b1: a2 (13) ...           R=1  hits [0]     P@1 0  AP@R 0               R-prec 0
      b2: a3 (50) ...           R=1  hits [0]     P@1 0  AP@R 0               R-prec 0
    P@1 = 2/5 = 0.4, MAP@R = (0.5 + 0.5 + 0.25) / 5 = 0.25, R-precision = 1.5 / 5 = 0.3."""
    vectors = _points([0, 10, 40, 23, 90, 180])
    labels = ["a", "a", "a", "b", "b", "c"]
    result = closed_set_metrics(vectors, labels)
    assert result == pytest.approx({"precision_at_1": 0.4, "map_at_r": 0.25, "r_precision": 0.3, "num_queries": 5})
    closed = ClosedSet(["a1", "a2", "a3", "b1", "b2", "c1"], labels, ["1", "2", "3", "4", "5", "6"], fraction=0.2)
    closed.score("hand", lambda inputs: vectors[: len(inputs)])
    assert closed.methods["hand"] == result
    summary = closed.summary()
    assert (summary["num_items"], summary["num_classes"], summary["item_ids"]) == (6, 3, ["1", "2", "3", "4", "5", "6"])
    assert "leave-one-out" in summary["protocol"]
    assert closed_set_table(closed.methods).splitlines()[2].split() == ["hand", "0.4000", "0.3000", "0.2500", "5"]


def test_no_query_without_two_items_of_a_class() -> None:
    assert closed_set_metrics(_points([0, 90]), ["a", "b"]) is None
    closed = ClosedSet(["x", "y"], ["a", "b"], ["1", "2"], fraction=0.2)
    closed.score("never_embedded", lambda inputs: pytest.fail("nothing to score, nothing to embed"))
    assert closed.summary()["methods"] == {}
