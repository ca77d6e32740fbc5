"""Monte Carlo p-values: exact under exchangeability, also when stopped early."""

from __future__ import annotations

import numpy as np

from onnx_lineage.evidence.permutation import monte_carlo


def _p_values(stop_after, runs=3000, copies=19):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(runs):
        observed = rng.random()  # the data, exchangeable with the copies
        out.append(monte_carlo(observed, rng.random, lambda x, o: x <= o, copies,
                               stop_after).p_value)
    return np.array(out)


def test_p_value_is_valid_under_the_null():
    for stop in (None, 3):
        p = _p_values(stop)
        for level in (0.05, 0.1, 0.25, 0.5):
            assert np.mean(p <= level) <= level + 0.02


def test_an_extreme_observation_gets_the_smallest_p_and_stopping_saves_draws():
    r = monte_carlo(-1.0, lambda: 1.0, lambda x, o: x <= o, 99)
    assert r.p_value == 0.01 and r.draws == 99 and not r.stopped
    r = monte_carlo(2.0, lambda: 1.0, lambda x, o: x <= o, 99, stop_after=5)
    assert r.stopped and r.draws == 5 and r.p_value == 1.0
