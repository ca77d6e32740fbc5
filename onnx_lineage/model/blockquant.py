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
