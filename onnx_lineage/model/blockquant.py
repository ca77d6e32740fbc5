"""Block-quantized weights as onnxruntime ships them: ``com.microsoft.MatMulNBits``.

A MatMulNBits node computes ``Y = A @ W`` with ``W`` of shape ``(K, N)`` stored per output column
``n`` in blocks of ``block_size`` values along ``K``: ``bits``-bit integers packed little-end first
into bytes ``B (N, blocks, block_size * bits / 8)``, one scale per block ``(N * blocks)`` and a
zero point per block (packed like ``B`` per column, or of the scales' type; ``2^(bits - 1)`` when
absent). With ``g_idx`` (an act-order export) value ``k`` takes the scale and zero point of block
``g_idx[k]``. :func:`dequantize_nbits` gives ``W.T``, the canonical ``(out, in)`` dense weight,
with each value's step (its block's scale).
"""

from __future__ import annotations

import numpy as np


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first ``count`` ``bits``-bit unsigned values of each row of bytes ``packed``
    ``(rows, nbytes)``, lowest bits first: shape ``(rows, count)``, uint8."""
    per = 8 // bits
    mask = (1 << bits) - 1
    shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
    values = (packed[..., None] >> shifts) & mask
    return values.reshape(packed.shape[0], -1)[:, :count].astype(np.uint8)


def dequantize_nbits(packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None,
                     k: int, n: int, bits: int, block_size: int,
                     g_idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The float32 weight ``(N, K)`` of a MatMulNBits node (see the module docstring), and the
    absolute scale of each of its values ``(N, K)``.

    Parameters
    ----------
    packed : ndarray of uint8, shape (N, blocks, block_size * bits // 8)
    scales : ndarray of float, N * blocks values
    zero_points : ndarray or None
        uint8 packed per column (N rows of ``ceil(blocks * bits / 8)`` bytes), or one float per
        block.
    """
    if bits not in (2, 4, 8) or block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"{bits}-bit blocks of {block_size} are not a MatMulNBits layout")
    blocks = -(-k // block_size)
    q = unpack(np.asarray(packed, np.uint8).reshape(n, -1), bits, blocks * block_size)
    scale = np.asarray(scales, np.float32).reshape(n, blocks)
    if zero_points is None:
        zero = np.full((n, blocks), float(1 << (bits - 1)), np.float32)
    elif np.asarray(zero_points).dtype == np.uint8:
        zero = unpack(np.asarray(zero_points).reshape(n, -1), bits, blocks).astype(np.float32)
    else:
        zero = np.asarray(zero_points, np.float32).reshape(n, blocks)
    block_of = (np.arange(k) // block_size if g_idx is None
                else np.asarray(g_idx, np.int64).reshape(-1)[:k])
    steps = scale[:, block_of]
    weight = ((q[:, :k].astype(np.float32) - zero[:, block_of]) * steps).astype(np.float32)
    return weight, np.abs(steps)


def blocked(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int,
            block_size: int, broadcast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(q - zero_point) * scale`` with one scale (and zero point) per block of ``block_size``
    values along ``axis``, as DequantizeLinear with ``block_size`` (opset 21) and
    GatherBlockQuantized compute it; and the absolute step of each value (its block's scale).

    Parameters
    ----------
    q : ndarray of any shape (integers, or floats decoded from a narrow float type)
    scale : ndarray, the rank of ``q``, ``ceil(q.shape[axis] / block_size)`` on ``axis`` and
        ``q``'s size on every other axis (or 1 there, with ``broadcast``)
    zero_point : ndarray of the shape of ``scale``, or None (0)
    axis : int
        The blocked axis (negative counts from the end).

    Returns
    -------
    value, steps : ndarray of float32, the shape of ``q``

    Raises
    ------
    ValueError
        When the block size, the axis or the shapes do not fit together (one line).
    """
    q = np.asarray(q)
    s = np.asarray(scale, np.float32)
    if q.ndim == 0 or not -q.ndim <= axis < q.ndim:
        raise ValueError(f"axis {axis} is outside a tensor of rank {q.ndim}")
    axis %= q.ndim
    if block_size < 1:
        raise ValueError(f"a block size of {block_size} holds no value")
    n = q.shape[axis]
    want = tuple(-(-n // block_size) if i == axis else d for i, d in enumerate(q.shape))
    fits = s.ndim == q.ndim and all(
        d == w or (broadcast and i != axis and d == 1) for i, (d, w) in enumerate(zip(s.shape, want)))
    if not fits:
        raise ValueError(f"scales of shape {list(s.shape)} do not give blocks of {block_size} "
                         f"along axis {axis} of a tensor of shape {list(q.shape)} "
                         f"(want {list(want)})")
    if zero_point is not None and np.shape(zero_point) != s.shape:
        raise ValueError(f"zero points of shape {list(np.shape(zero_point))} do not match "
                         f"scales of shape {list(s.shape)}")
    s = np.repeat(s, block_size, axis=axis).take(np.arange(n), axis=axis)
    qf = q.astype(np.float32)
    if zero_point is not None:
        z = np.repeat(np.asarray(zero_point).astype(np.float32), block_size, axis=axis)
        qf = qf - z.take(np.arange(n), axis=axis)
    return (qf * s).astype(np.float32), np.abs(np.broadcast_to(s, q.shape)).astype(np.float32)


def gather_blocks(data: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, bits: int,
                  block_size: int, quantize_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The float32 table a GatherBlockQuantized node gathers from, and each value's step.

    ``data`` of uint8 holds ``bits``-bit values (2, 4 or 8) packed along its last axis, lowest
    bits first, which must be ``quantize_axis``; its zero points are packed the same way along
    that axis, ``2^(bits - 1)`` when absent. int4/uint4 ``data`` (and zero points, 0 when
    absent) is read in its logical shape, blocked along any axis. Float data (float8, decoded)
    has no zero point; a ``block_size`` of 0 is one block over the whole axis, and its scales
    may be 1 on the other axes (one scale for them all).

    Parameters
    ----------
    data : ndarray, uint8 packed, int4/uint4 (ml_dtypes) or float32
    scales : ndarray, the rank of the table, ``ceil(size / block_size)`` on ``quantize_axis``
    zero_points : ndarray or None
    """
    data = np.asarray(data)
    rank = data.ndim
    if rank == 0 or not -rank <= quantize_axis < rank:
        raise ValueError(f"quantize_axis {quantize_axis} is outside a table of rank {rank}")
    quantize_axis %= rank
    floats = data.dtype.kind == "f"
    if not (floats and block_size == 0) and (block_size < 16 or block_size & (block_size - 1)):
        raise ValueError(f"block_size {block_size} is not a power of 2 of at least 16")
    if block_size == 0:  # float8: one block over the whole axis
        block_size = max(data.shape[quantize_axis], 1)
    if floats and zero_points is not None:
        raise ValueError("a float8 table has no zero points")
    if data.dtype == np.uint8:
        data, zero_points = _unpacked_table(data, zero_points, bits, quantize_axis,
                                            np.shape(scales))
    elif bits != 4 and not floats:
        raise ValueError(f"{data.dtype.name} data holds 4-bit values, not {bits}-bit ones")
    return blocked(data, scales, zero_points, quantize_axis, block_size, broadcast=floats)


def _unpacked_table(data: np.ndarray, zero_points: np.ndarray | None, bits: int, axis: int,
                    scale_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 table's values and zero points, unpacked along its last axis (``axis``)."""
    if bits not in (2, 4, 8):
        raise ValueError(f"uint8 data holds 2-, 4- or 8-bit values, not {bits}-bit ones")
    if axis != data.ndim - 1:
        raise ValueError(f"uint8 data is quantized along its last axis, not axis {axis}")
    per = 8 // bits
    width = data.shape[-1]
    values = unpack(data.reshape(-1, width), bits, width * per)
    values = values.reshape(data.shape[:-1] + (width * per,))
    blocks = scale_shape[-1] if len(scale_shape) == data.ndim else 0
    if zero_points is None:
        return values, np.full(scale_shape, 1 << (bits - 1), np.uint8)
    zp = np.asarray(zero_points, np.uint8)
    if zp.shape != tuple(scale_shape[:-1]) + (-(-blocks // per),):
        raise ValueError(f"zero points of shape {list(zp.shape)} do not hold the "
                         f"{bits}-bit zero points of scales of shape {list(scale_shape)}")
    zp = unpack(zp.reshape(-1, zp.shape[-1]), bits, blocks).reshape(scale_shape)
    return values, zp


def float_steps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float32 values of a one-byte float array (float8 of any kind), and each value's step:
    the larger gap from it to its neighbours in its format (half of it bounds the rounding of
    a value stored in that format).

    Parameters
    ----------
    values : ndarray of an ml_dtypes float8 type

    Returns
    -------
    value, steps : ndarray of float32, the shape of ``values``
    """
    codes = np.arange(256, dtype=np.uint8).view(values.dtype).astype(np.float32)
    finite = np.isfinite(codes)
    grid = np.unique(codes[finite])
    gaps = np.diff(grid)
    around = np.maximum(np.concatenate([gaps[:1], gaps]), np.concatenate([gaps, gaps[-1:]]))
    table = np.full(256, np.inf, np.float32)
    table[finite] = around[np.searchsorted(grid, codes[finite])]
    code = np.ascontiguousarray(values).view(np.uint8)
    return values.astype(np.float32), table[code]
