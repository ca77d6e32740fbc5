"""Class labels from score rows, with the finiteness check fused in (one pass over the scores)."""

from __future__ import annotations

import numpy as np

from kernels._jit import njit


@njit(nogil=True)
def argmax_rows(scores, labels):
    """Index of each row's largest score; ``False`` if any score is NaN or infinite.

    Ties go to the first index (as ``numpy.argmax``).

    Parameters
    ----------
    scores : ndarray of shape (n, k), float32
    labels : ndarray of shape (n,), int64
        Written in place.

    Returns
    -------
    bool
        Whether every score was finite (``labels`` is meaningless otherwise).
    """
    n, k = scores.shape
    bad = np.float32(0.0)  # stays 0 unless a score is NaN or infinite (then v - v is NaN)
    for i in range(n):
        row = scores[i]
        best = row[0]
        arg = 0
        for j in range(k):
            v = row[j]
            bad += v - v
            if v > best:
                best = v
                arg = j
        labels[i] = arg
    return bad == 0.0
