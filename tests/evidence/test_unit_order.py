"""The unit-order test: the fixed-point tail against enumeration, and the test on real matches."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from onnx_lineage.matching.classes import ClassMatch, SymmetryClass
from onnx_lineage.matching.permutation import Reader
from onnx_lineage.evidence.unit_order import (
    fixed_point_tail,
    succession_tail,
    successions,
    unit_order_test,
)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_fixed_point_tail_equals_enumeration(n):
    counts = np.zeros(n + 1)
    for perm in itertools.permutations(range(n)):
        counts[sum(i == p for i, p in enumerate(perm))] += 1
    exact = counts[::-1].cumsum()[::-1] / math.factorial(n)  # P(F >= f)
    for f in range(n + 1):
        assert fixed_point_tail(n, f) == pytest.approx(exact[f], rel=1e-9, abs=1e-15)


def test_fixed_point_tail_matches_simulation_for_a_wide_layer():
    rng = np.random.default_rng(0)
    n, draws = 200, 40000
    fixed = np.array([(rng.permutation(n) == np.arange(n)).sum() for _ in range(draws)])
    for f in (1, 2, 3, 4):
        assert fixed_point_tail(n, f) == pytest.approx(np.mean(fixed >= f), abs=0.01)
    assert fixed_point_tail(n, n) == pytest.approx(1 / math.factorial(n) if n < 170 else 1e-300,
                                                   rel=1e-6)


def test_all_units_in_order_is_1_over_n_factorial():
    assert fixed_point_tail(10, 10) == pytest.approx(1 / math.factorial(10), rel=1e-9)
    # exactly 9 of 10 in place is impossible
    assert fixed_point_tail(10, 9) == pytest.approx(1 / math.factorial(10), rel=1e-9)


def _match(width, fixed):
    perm = np.arange(width)
    if fixed < width:
        moved = perm[fixed:]
        perm[fixed:] = np.roll(moved, 1)  # a derangement of the rest
    cls = SymmetryClass("layer 0 units", "units", width, (0,), (Reader(1),))
    return ClassMatch(cls, perm, int((perm == np.arange(width)).sum()), 0.5, 10, ("in:0",))


def test_a_copy_in_order_is_rejected_and_a_shuffled_one_is_not():
    kept = unit_order_test([_match(16, 16), _match(8, 8)], alpha=0.01)
    assert kept.p_value < 1e-15 and kept.power
    shuffled = unit_order_test([_match(16, 0), _match(8, 1)], alpha=0.01)
    assert shuffled.p_value > 0.5 and shuffled.power


def test_no_classes_means_no_power():
    r = unit_order_test([], alpha=0.01)
    assert r.p_value is None and not r.power
    tiny = unit_order_test([_match(2, 2)], alpha=0.001)
    assert not tiny.power  # 1/2! can never reach 0.001


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_the_succession_tail_is_exact(k):
    counts = np.zeros(k)
    for p in itertools.permutations(range(k)):
        counts[sum(p[i + 1] == p[i] + 1 for i in range(k - 1))] += 1
    tails = counts[::-1].cumsum()[::-1] / math.factorial(k)
    assert np.allclose([succession_tail(k, s) for s in range(k)], tails, rtol=1e-12)


def test_successions_read_the_kept_units_in_order():
    # B kept 4 of 6 units: A's units 0, 2, 3, 5 matched to B's 0-3 in order, the rest to padding
    assert successions(np.array([0, 4, 1, 2, 5, 3]), "b", 4) == (3, 4)
    assert successions(np.array([3, 4, 1, 2, 5, 0]), "b", 4) == (1, 4)
    # A kept 3: its units matched to B's 5, 1, 2 (ranks 2, 0, 1: one succession)
    assert successions(np.array([5, 1, 2, 0, 3, 4]), "a", 3) == (1, 3)
