"""Count sketches of feature rows, for similarities too large to compute exactly."""

from __future__ import annotations

import numpy as np

from kernels._jit import njit


@njit(nogil=True, fastmath=False)
def count_sketch(x, bucket, sign, out, squares):
    """Add each row's count sketch to ``out`` and its sum of squares to ``squares``.

    Feature ``f`` of a row is added, times ``sign[f]``, to the row's bucket ``bucket[f]``: a
    linear map of the features to ``out.shape[1]`` buckets that keeps dot products in
    expectation. One pass over ``x``, any strides, nothing copied.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32, any strides (rows contiguous: fastest)
    bucket : ndarray of shape (d,), int64, values in ``[0, buckets)``
    sign : ndarray of shape (d,), float32, +1 or -1
    out : ndarray of shape (n, buckets), float64
        Added to.
    squares : ndarray of shape (n,), float64
        Added to: each row's sum of squares (in float64: no float32 value overflows it).
    """
    n, d = x.shape
    for i in range(n):
        acc = 0.0
        for f in range(d):
            v = np.float64(x[i, f])
            out[i, bucket[f]] += sign[f] * v
            acc += v * v
        squares[i] += acc


@njit(nogil=True, fastmath=False)
def count_sketch_columns(xt, bucket, sign, out_t, squares):
    """:func:`count_sketch` of ``x`` given as its transpose ``xt`` (an embedding table read
    ``(dim, vocab)`` from its stored ``(vocab, dim)`` rows), walked in memory order.

    Parameters
    ----------
    xt : ndarray of shape (d, n), float32, rows contiguous
    bucket, sign : as in :func:`count_sketch`
    out_t : ndarray of shape (buckets, n), float64
        Added to: the transposed sketch.
    squares : ndarray of shape (n,), float64
        Added to.
    """
    d, n = xt.shape
    for f in range(d):
        b = bucket[f]
        s = sign[f]
        for i in range(n):
            v = np.float64(xt[f, i])
            out_t[b, i] += s * v
            squares[i] += v * v
