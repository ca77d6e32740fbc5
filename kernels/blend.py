"""Weight blending for interpolation sweeps."""

from __future__ import annotations

import numpy as np

from kernels._jit import njit


@njit(nogil=True, fastmath=False)
def blend(a, b, t, out):
    """Linear interpolation of two parameter vectors, in place.

    ``out[i] = a[i] + t * (b[i] - a[i])``, i.e. ``theta(t) = (1 - t) theta_A + t theta_B``.

    Parameters
    ----------
    a, b : ndarray of shape (n,), float32
        The two endpoints (flat, contiguous).
    t : float
        Position on the line; 0 gives ``a``, 1 gives ``b``.
    out : ndarray of shape (n,), float32
        Written in place (may be a view into a larger buffer).
    """
    al = np.float32(t)
    for i in range(a.shape[0]):
        out[i] = a[i] + al * (b[i] - a[i])


@njit(nogil=True, fastmath=False)
def blend_2d(a, b, t, out):
    """:func:`blend` of two matrices of any strides (a transposed view, as a weight stored
    ``(in, out)`` and read ``(out, in)`` is), in tiles so that neither layout is walked against
    its grain for long.

    Parameters
    ----------
    a, b : ndarray of shape (n, m), float32, any strides
    t : float
    out : ndarray of shape (n, m), float32
    """
    al = np.float32(t)
    n, m = a.shape
    tile = 64
    for i0 in range(0, n, tile):
        for j0 in range(0, m, tile):
            for i in range(i0, min(i0 + tile, n)):
                for j in range(j0, min(j0 + tile, m)):
                    out[i, j] = a[i, j] + al * (b[i, j] - a[i, j])


#: ``2 ** 112``: moves a half-precision exponent (bias 15) to single precision's (bias 127).
_HALF_TO_SINGLE = np.float32(2.0 ** 112)


@njit(nogil=True, fastmath=False)
def widen_half(h, u):
    """IEEE half-precision values, given as their bits, widened to single precision, exactly.

    Branchless, so that it vectorises: the half's exponent and mantissa shifted into place read as
    a float32 that is ``2 ** -112`` times the value (subnormal halves included), a multiplication
    by ``2 ** 112`` makes it right, infinities and NaNs get the all-ones exponent back, the sign is
    copied last.

    Parameters
    ----------
    h : ndarray of shape (n,), uint16
        The half-precision bits (``x.view(np.uint16)`` of a float16 array).
    u : ndarray of shape (n,), uint32
        Written: the float32 bits (``u.view(np.float32)`` holds the values).
    """
    n = h.shape[0]
    for i in range(n):
        u[i] = np.uint32(h[i] & 0x7FFF) << np.uint32(13)
    f = u.view(np.float32)
    for i in range(n):
        f[i] = f[i] * _HALF_TO_SINGLE
    for i in range(n):
        x = np.uint32(h[i])
        special = np.uint32(0x7F800000) if (x & np.uint32(0x7C00)) == np.uint32(0x7C00) \
            else np.uint32(0)
        u[i] = u[i] | special | ((x & np.uint32(0x8000)) << np.uint32(16))


@njit(nogil=True, fastmath=False)
def blend_mixed(a16, a32, a_half, b16, b32, b_half, t, out, scratch):
    """:func:`blend` of endpoints that may be half precision, never widened whole: chunks of
    ``scratch.size // 2`` values are widened (:func:`widen_half`) into ``scratch`` and blended
    from there. The result is bit for bit that of the endpoints widened first (widening is exact).

    Parameters
    ----------
    a16, a32 : ndarray of shape (n,), uint16 and float32
        Endpoint A: its half-precision bits in ``a16`` if ``a_half``, else its values in ``a32``
        (the other array is not read and may be empty).
    a_half : bool
    b16, b32, b_half
        Endpoint B, the same way.
    t : float
    out : ndarray of shape (n,), float32
        Written in place.
    scratch : ndarray of shape (2 * chunk,), uint32
    """
    al = np.float32(t)
    n = out.shape[0]
    chunk = scratch.shape[0] // 2
    ua = scratch[:chunk]
    ub = scratch[chunk:]
    for c0 in range(0, n, chunk):
        m = min(chunk, n - c0)
        if a_half:
            widen_half(a16[c0:c0 + m], ua[:m])
            fa = ua[:m].view(np.float32)
        else:
            fa = a32[c0:c0 + m]
        if b_half:
            widen_half(b16[c0:c0 + m], ub[:m])
            fb = ub[:m].view(np.float32)
        else:
            fb = b32[c0:c0 + m]
        for i in range(m):
            out[c0 + i] = fa[i] + al * (fb[i] - fa[i])
