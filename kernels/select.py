"""Selecting each row's largest entries, for assignments restricted to candidates."""

from __future__ import annotations

import numpy as np

from kernels._jit import njit


@njit(nogil=True, fastmath=False)
def top_candidates(sim, k, cols, costs):
    """Each row's ``k`` largest columns of ``sim``, in increasing column order, and their costs
    ``2 - sim`` (float64), the rows of a CSR matrix with ``k`` entries per row. Among columns
    tied at the ``k``-th largest value the first ones are taken.

    Parameters
    ----------
    sim : ndarray of shape (n, m), float32, C-contiguous
    k : int
        At most ``m``.
    cols : ndarray of shape (n * k,), int32 or int64
        Written: row ``i``'s columns at ``cols[i * k:(i + 1) * k]``.
    costs : ndarray of shape (n * k,), float64
        Written likewise.
    """
    n, m = sim.shape
    for i in range(n):
        row = sim[i]
        kth = np.partition(row, m - k)[m - k]  # the k-th largest value
        above = 0
        for j in range(m):
            if row[j] > kth:
                above += 1
        ties = k - above  # columns equal to kth to take, the first ones
        at = i * k
        for j in range(m):
            v = row[j]
            if v > kth or (v == kth and ties > 0):
                if v == kth:
                    ties -= 1
                cols[at] = j
                costs[at] = 2.0 - np.float64(v)
                at += 1
