"""Gandy's sequential Monte Carlo decision: boundaries, resampling risk, size, the interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from onnx_lineage.evidence.basin import copies_for
from onnx_lineage.evidence.sequential import (Boundaries, decide, interval, reject_chance,
                                              size)

LEVELS = (0.01 / 3, 0.05 / 3, 0.05)


@pytest.mark.parametrize("level", LEVELS)
def test_the_estimate_lies_on_the_side_each_boundary_decides(level):
    b = Boundaries(level)
    lower, upper = b.at(20_000)[0], None
    for n in range(1, 20_001):
        lower, upper = b.at(n)
        assert (1 + upper) / (1 + n) > level  # stopped above: the p-value reported is above
        assert lower < 0 or (1 + lower) / (1 + n) <= level
        assert lower < upper
    assert lower >= 0  # by 20,000 copies a count stops from below


@pytest.mark.parametrize("level", LEVELS)
def test_the_resampling_risk_is_bounded_away_from_the_level(level):
    """With the default most copies, the chance of the other decision is within the bound
    unless the p-value lies within a fifth to twice the level."""
    b, most = Boundaries(level), copies_for(level)
    below = reject_chance(b, [0.0, 0.1 * level, 0.2 * level], most)
    above = reject_chance(b, [2 * level, 4 * level, 0.5, 1.0], most)
    assert np.all(below >= 1 - b.risk) and np.all(above <= b.risk)


@pytest.mark.parametrize("level", LEVELS)
def test_the_decision_is_valid_at_its_level(level):
    """Under the null the ideal p-value is at least uniform: the chance of deciding ``below``
    is at most the level, the limit included."""
    b = Boundaries(level)
    assert size(b, copies_for(level)) <= level
    assert size(b, 50) <= level  # a small most: the limit decides nearly every time


def test_simulated_decisions_agree_with_the_computed_chance():
    """Decisions drawn with a known p-value, and a risk bound large enough to be seen."""
    level, risk, p = 0.05, 0.05, 0.035
    rng = np.random.default_rng(0)
    runs = [decide(1.0, rng.random, lambda x, o: x <= p, level, 2000, risk) for _ in range(1500)]
    seen = np.mean([r.below for r in runs])
    expected = reject_chance(Boundaries(level, risk), [p], 2000)[0]
    assert abs(seen - expected) < 4 * np.sqrt(expected * (1 - expected) / len(runs))


def test_a_share_of_none_stops_below_after_about_ln_1000_over_the_level():
    d = decide(1.0, lambda: 2.0, lambda x, o: x <= o, 0.01 / 3, copies_for(0.01 / 3))
    assert d.outcome == "below" and d.reached == 0 and d.below
    assert 1500 < d.draws < 2500 and d.p_value == 1 / (1 + d.draws)
    assert d.interval[0] == 0.0 and d.interval[1] < 0.01 / 3


def test_a_share_of_all_stops_above_within_a_few_copies():
    d = decide(1.0, lambda: 0.0, lambda x, o: x <= o, 0.01 / 3, 9000)
    assert d.outcome == "above" and d.draws <= 3 and d.p_value == 1.0 and not d.below


def test_at_the_limit_the_upper_end_of_the_interval_decides():
    """Undecided at the most copies, the p-value is the share's upper 99% bound: none of 2,000
    copies as low as B is below the level (the boundary would have needed 2,182), none of 400
    is not (1/401 would have been)."""
    d = decide(1.0, lambda: 2.0, lambda x, o: x <= o, 0.01 / 3, 2000)
    assert d.outcome == "limit" and d.draws == 2000 and d.below and d.risk == 1.0
    assert d.p_value == d.interval[1] < 0.01 / 3
    d = decide(1.0, lambda: 2.0, lambda x, o: x <= o, 0.01 / 3, 400)
    assert d.outcome == "limit" and not d.below and d.p_value == d.interval[1] > 0.01 / 3


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (7, 2000)])
def test_the_interval_is_clopper_pearson(k, n):
    lo, hi = interval(k, n, 0.99)
    assert lo == pytest.approx(beta.ppf(0.005, k, n - k + 1) if k else 0.0)
    assert hi == pytest.approx(beta.ppf(0.995, k + 1, n - k) if k < n else 1.0)


def test_a_level_outside_zero_and_one_is_refused():
    with pytest.raises(ValueError):
        Boundaries(0.0)
