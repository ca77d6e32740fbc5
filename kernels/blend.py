"""Weight blending for interpolation sweeps."""

from __future__ import annotations

import numpy as np

from kernels._jit import njit


@njit(nogil=True, fastmath=False)
def blend(a, b, alpha, out):
    """Linear interpolation of two parameter vectors, in place.

    ``out[i] = a[i] + alpha * (b[i] - a[i])``, i.e. ``theta(alpha) = (1 - alpha) theta_A + alpha theta_B``.

    Parameters
    ----------
    a, b : ndarray of shape (n,), float32
        The two endpoints (flat, contiguous).
    alpha : float
        Position on the line; 0 gives ``a``, 1 gives ``b``.
    out : ndarray of shape (n,), float32
        Written in place (may be a view into a larger buffer).
    """
    al = np.float32(alpha)
    for i in range(a.shape[0]):
        out[i] = a[i] + al * (b[i] - a[i])
