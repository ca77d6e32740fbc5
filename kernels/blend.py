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


@njit(nogil=True, fastmath=False)
def blend_2d(a, b, alpha, out):
    """:func:`blend` of two matrices of any strides (a transposed view, as a weight stored
    ``(in, out)`` and read ``(out, in)`` is), in tiles so that neither layout is walked against
    its grain for long.

    Parameters
    ----------
    a, b : ndarray of shape (n, m), float32, any strides
    alpha : float
    out : ndarray of shape (n, m), float32
    """
    al = np.float32(alpha)
    n, m = a.shape
    tile = 64
    for i0 in range(0, n, tile):
        for j0 in range(0, m, tile):
            for i in range(i0, min(i0 + tile, n)):
                for j in range(j0, min(j0 + tile, m)):
                    out[i, j] = a[i, j] + al * (b[i, j] - a[i, j])
