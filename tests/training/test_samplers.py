"""Batch samplers: composition of P x K batches, determinism by seed, class balance on skewed labels."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2

from arcsearch.training.data.samplers import class_balanced_batches, pk_batches
from arcsearch.training.data.splits import shuffled_batches

SKEWED_SIZES = (2000, 500, 100, 20, 5)


def skewed_codes() -> np.ndarray:
    """Class codes 10, 20, ... (not contiguous) with the sizes of ``SKEWED_SIZES``, shuffled."""
    codes = np.concatenate([np.full(size, 10 * (c + 1)) for c, size in enumerate(SKEWED_SIZES)])
    return np.random.default_rng(0).permutation(codes)


def chi_square_against_uniform(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


def test_pk_batches_hold_p_classes_of_k_items_each() -> None:
    codes = np.array([0] * 30 + [1] * 12 + [2] * 2 + [3] * 9 + [4] * 7 + [5] * 40)
    batches = pk_batches(codes, classes_per_batch=3, samples_per_class=4, rng=np.random.default_rng(1))
    assert len(batches) == len(codes) // 12
    small_class_repeats = 0
    for batch in batches:
        assert batch.shape == (12,)
        per_class = Counter(codes[batch].tolist())
        assert len(per_class) == 3 and set(per_class.values()) == {4}
        for code in per_class:
            items = batch[codes[batch] == code]
            if code == 2:
                small_class_repeats += 1
                assert set(items.tolist()) <= {42, 43}  # the 2-item class is drawn with replacement
            else:
                assert len(set(items.tolist())) == 4, "a class with K or more items gives K distinct ones"
    assert small_class_repeats > 0
    appearances = Counter(code for batch in batches for code in set(codes[batch].tolist()))
    assert set(appearances) == set(range(6))
    assert max(appearances.values()) - min(appearances.values()) <= 1, "classes come round equally often"


def test_pk_batches_are_deterministic_by_seed_and_reject_bad_sizes() -> None:
    codes = skewed_codes()
    def draw(seed: int) -> list[np.ndarray]:
        return pk_batches(codes, classes_per_batch=4, samples_per_class=8, rng=np.random.default_rng(seed))
    first, again, other = draw(7), draw(7), draw(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    with pytest.raises(ValueError, match="P <= 5"):
        pk_batches(codes, classes_per_batch=6, samples_per_class=2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="K >= 1"):
        pk_batches(codes, classes_per_batch=1, samples_per_class=1, rng=np.random.default_rng(0))


def test_class_balanced_batches_draw_each_class_equally_often_on_skewed_labels() -> None:
    codes = skewed_codes()
    batches = class_balanced_batches(codes, batch_size=64, rng=np.random.default_rng(3))
    drawn = np.concatenate(batches)
    assert all(len(b) == 64 for b in batches[:-1]) and len(batches[-1]) >= 2
    assert len(codes) - 1 <= len(drawn) <= len(codes)
    per_class = Counter(codes[drawn].tolist())
    counts = [per_class[10 * (c + 1)] for c in range(len(SKEWED_SIZES))]
    critical = chi2.ppf(0.999, df=len(SKEWED_SIZES) - 1)
    assert chi_square_against_uniform(counts) < critical, counts
    assert set(drawn[codes[drawn] == 50].tolist()) == set(np.flatnonzero(codes == 50).tolist()), \
        "all five items of the smallest class are drawn"
    # the same test has power: plain shuffling follows the skew and fails it by far
    plain = np.concatenate(shuffled_batches(len(codes), batch_size=64, rng=np.random.default_rng(3)))
    plain_per_class = Counter(codes[plain].tolist())
    assert chi_square_against_uniform([plain_per_class[10 * (c + 1)] for c in range(5)]) > 100 * critical


def test_class_balanced_batches_are_deterministic_by_seed() -> None:
    codes = skewed_codes()
    first = class_balanced_batches(codes, batch_size=32, rng=np.random.default_rng(5))
    again = class_balanced_batches(codes, batch_size=32, rng=np.random.default_rng(5))
    other = class_balanced_batches(codes, batch_size=32, rng=np.random.default_rng(6))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(np.concatenate(first), np.concatenate(other))
    with pytest.raises(ValueError, match="batch_size"):
        class_balanced_batches(codes, batch_size=1, rng=np.random.default_rng(0))
