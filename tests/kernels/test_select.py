"""Selecting each row's largest entries."""

from __future__ import annotations

import numpy as np

from kernels.select import top_candidates


def test_each_rows_largest_columns_in_order_with_their_costs():
    rng = np.random.default_rng(0)
    sim = rng.random((6, 20)).astype(np.float32)
    k = 5
    cols, costs = np.empty(6 * k, np.int32), np.empty(6 * k)
    top_candidates(sim, k, cols, costs)
    for i in range(6):
        mine = cols[i * k:(i + 1) * k]
        np.testing.assert_array_equal(mine, np.sort(np.argsort(-sim[i])[:k]))
        np.testing.assert_allclose(costs[i * k:(i + 1) * k], 2.0 - sim[i, mine].astype(np.float64))


def test_ties_at_the_kth_value_take_the_first_columns():
    sim = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]], np.float32)
    cols, costs = np.empty(3, np.int64), np.empty(3)
    top_candidates(sim, 3, cols, costs)
    np.testing.assert_array_equal(cols, [0, 1, 2])
