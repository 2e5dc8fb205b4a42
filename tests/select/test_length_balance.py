"""Length bias and length balancing (prefkit.select.length_balance), checked against brute force."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import polars as pl
import pytest

from prefkit.errors import SelectionError
from prefkit.select.length_balance import balanced_sizes, length_balance_drops, length_bias, spearman


def test_length_bias_numbers():
    chosen = [10, 20, 30, 5, 8, 0]
    rejected = [5, 20, 10, 6, 0, 4]
    margin = [1.0, None, 3.0, 0.5, float("nan"), 2.0]
    out = length_bias(chosen, rejected, margin)
    assert out == {
        "pairs": 6,
        "chosen_longer": 3,  # 10>5, 30>10, 8>0
        "rejected_longer": 2,  # 5<6, 0<4
        "equal_length": 1,
        "chosen_longer_fraction": 0.5,
        "median_length_ratio": pytest.approx(np.median([2.0, 1.0, 3.0, 5 / 6, 0.0])),  # rejected 0 skipped
        "pairs_with_margin": 4,
        # margins 1, 3, 0.5, 2 (ranks 2, 4, 1, 3) vs diffs 5, 20, -1, -4 (ranks 3, 4, 2, 1)
        "margin_length_spearman": pytest.approx(0.4),
    }
    empty = length_bias([], [])
    assert empty["pairs"] == 0 and empty["chosen_longer_fraction"] is None
    assert empty["median_length_ratio"] is None and empty["margin_length_spearman"] is None


def test_spearman_ties_and_degenerate_cases():
    assert spearman(np.array([1.0, 2, 3]), np.array([10.0, 20, 30])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0]), np.array([1.0])) is None
    assert spearman(np.array([1.0, 1, 1]), np.array([1.0, 2, 3])) is None
    # ties get average ranks: x ranks (1.5, 1.5, 3, 4), y ranks (1, 2, 3, 4)
    rx, ry = np.array([1.5, 1.5, 3, 4]), np.array([1.0, 2, 3, 4])
    expected = np.corrcoef(rx, ry)[0, 1]
    assert spearman(np.array([1.0, 1, 2, 3]), np.array([1.0, 2, 3, 4])) == pytest.approx(expected)


def test_spearman_matches_scipy_when_available():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = (
        rng.integers(0, 20, 300).astype(float),
        rng.integers(0, 20, 300).astype(float) + np.arange(300) / 50,
    )
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def brute_force(longer: int, others: int, tol: float) -> int:
    """Most pairs in a subset whose chosen-longer fraction is within 0.5 ± tol (0 for only the empty set)."""
    best = 0
    for a, b in itertools.product(range(longer + 1), range(others + 1)):
        if a + b and abs(a / (a + b) - 0.5) <= tol + 1e-12:
            best = max(best, a + b)
    return best


@pytest.mark.parametrize("tol", [0.0, 0.01, 0.05, 0.1, 0.25])
def test_balanced_sizes_is_optimal(tol):
    for longer, others in itertools.product(range(0, 23), range(0, 23)):
        a, b = balanced_sizes(longer, others, tol)
        assert a <= longer and b <= others
        assert a + b == brute_force(longer, others, tol), (longer, others, tol)
        assert a + b == 0 or abs(a / (a + b) - 0.5) <= tol + 1e-12
        assert a == longer or b == others  # only the majority side loses pairs


def test_drops_on_planted_bias():
    rng = random.Random(0)
    n = 1000
    longer = [i < 700 for i in range(n)]  # 70 % chosen-longer
    rng.shuffle(longer)
    chosen = [200 if is_longer else 100 for is_longer in longer]
    rejected = [100 if is_longer else rng.choice([100, 150]) for is_longer in longer]  # some equal lengths
    margin = [rng.random() if rng.random() > 0.1 else None for _ in range(n)]
    drops = length_balance_drops(chosen, rejected, margin)
    keep_longer = math.floor(300 * 51 / 49)  # (0.5 + 0.01) / (0.5 - 0.01) = 51/49
    assert len(drops) == 700 - keep_longer
    assert all(longer[i] for i in drops)  # only chosen-longer pairs go
    kept = np.setdiff1d(np.arange(n), drops)
    bias = length_bias(np.array(chosen)[kept], np.array(rejected)[kept])
    assert abs(bias["chosen_longer_fraction"] - 0.5) <= 0.01
    # lowest margins first, missing margins before any number
    key = {i: (-1.0 if margin[i] is None else margin[i]) for i in range(n) if longer[i]}
    assert max(key[i] for i in drops) <= min(key[i] for i in kept if longer[i])
    assert {i for i in key if margin[i] is None} <= set(drops.tolist())


def test_drop_order_ties_and_minority_side():
    # 4 rejected-longer-or-equal pairs, 1 chosen-longer: the "others" side is the majority
    chosen = [1, 5, 5, 1, 9]
    rejected = [9, 5, 5, 9, 1]
    margin = [0.2, 0.2, None, float("nan"), 7.0]
    # keep others = floor(51/49 * 1) = 1: drop 3 of rows 0-3; NaN and None first (later first: 3, 2), then 0.2
    # tie between rows 0 and 1: the later (1) goes
    assert length_balance_drops(chosen, rejected, margin).tolist() == [1, 2, 3]
    assert length_balance_drops(chosen, rejected).tolist() == [1, 2, 3]  # no margins: later rows first


def test_no_drop_when_balanced_and_edge_cases():
    assert length_balance_drops([2, 1], [1, 2], [0.1, 0.2]).tolist() == []
    assert length_balance_drops([], []).tolist() == []
    assert length_balance_drops([3, 4, 5], [1, 1, 1]).tolist() == [0, 1, 2]  # only the empty set is balanced
    assert length_balance_drops([3, 4, 1], [1, 1, 1], tolerance=0.2).tolist() == []  # 2/3 <= 0.7
    assert length_balance_drops([3, 4, 1], [1, 1, 1], tolerance=0.1).tolist() == [1]  # keep 1 of 2
    series = length_balance_drops(pl.Series([2, 3, 1]), pl.Series([1, 1, 5]), pl.Series([None, 1.0, 2.0]))
    assert series.tolist() == [0]


@pytest.mark.parametrize(
    ("chosen", "rejected", "kwargs", "message"),
    [
        ([1, None], [1, 2], {}, "chosen_len must be finite, non-negative numbers without nulls"),
        ([1, -2], [1, 2], {}, "chosen_len must be finite, non-negative numbers without nulls"),
        ([1, float("inf")], [1, 2], {}, "chosen_len must be finite, non-negative numbers without nulls"),
        ([1, 2], [1], {}, "chosen_len has 2 values, rejected_len 1"),
        ([1, 2], [1, 2], {"tolerance": 0.5}, r"tolerance must be in \[0, 0.5\), got 0.5"),
        ([1, 2], [1, 2], {"tolerance": -0.1}, r"tolerance must be in \[0, 0.5\), got -0.1"),
        ([1, 2], [1, 2], {"margin": [1.0]}, "margin has 1 values for 2 pairs"),
    ],
)
def test_bad_inputs(chosen, rejected, kwargs, message):
    with pytest.raises(SelectionError, match=message):
        length_balance_drops(chosen, rejected, **kwargs)
