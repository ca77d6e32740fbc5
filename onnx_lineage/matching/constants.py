"""Fixed signal-processing constants: tensors that are not trained and prove no shared training.

STFT/DFT bases, sinusoidal position tables and similar constants are computed, not learned, so
they can be bit-identical in unrelated models. Every row (or every column) of such a tensor is a
sampled sinusoid ``x[n] = A cos(w n + p)`` (a ramp or a constant being the ``w = 0`` case), and a
sampled sinusoid satisfies the recurrence ``x[n + 1] + x[n - 1] = 2 cos(w) x[n]`` exactly, whatever
its frequency, phase and amplitude. A windowed basis (an STFT's rows under a Hann window, as a
voice detector's front end stores them) is a sum of three sinusoids, which satisfies a recurrence
of order three. Trained weights satisfy neither.
"""

from __future__ import annotations

import weakref

import numpy as np

#: Relative residual of the recurrence below which a row counts as a sinusoid (for a row stored in
#: float16, eight times its rounding).
RESIDUAL = 1e-3
#: Fraction of rows that must be sinusoids.
FRACTION = 0.9
MIN_LENGTH = 8
#: Sinusoids a windowed row sums: a sinusoid times a Hann or Hamming window is three.
WINDOWED = 3
#: Relative residual of the one-sinusoid recurrence under which a row is tested for
#: :data:`WINDOWED` sinusoids: at most 0.06 on the windowed bases of the corpus (STFT, CQT), 0.29
#: and up on trained rows. A screen only: it can miss a constant, never make one of a weight.
NEAR_ONE = 0.25
#: Rows at least this long are also tested for :data:`WINDOWED` sinusoids (the recurrence has
#: that many free coefficients per row: on short rows it would fit anything).
MIN_WINDOWED_LENGTH = 64


#: Leading rows in which the columns are screened first (:func:`is_signal_constant`).
SCREEN_ROWS = 64


def _sinusoids(part: np.ndarray) -> tuple[int, int]:
    """(sinusoid rows, non-zero rows) of ``part`` (rows, n): rows that satisfy the recurrence of
    one sinusoid, or, when long enough, that of a sum of up to :data:`WINDOWED` sinusoids."""
    tol = RESIDUAL
    if np.array_equal(part, part.astype(np.float16).astype(part.dtype)):  # stored as float16:
        tol = max(RESIDUAL, 8 * np.finfo(np.float16).eps)  # its rounding, not a misfit
    part = part.astype(np.float64)
    scale = np.linalg.norm(part, axis=1)
    part, scale = part[scale > 0], scale[scale > 0]
    one = _recurrence_residual(part, 1)
    ok = one <= tol * scale
    # a window changes slowly over a period: a windowed sinusoid nearly keeps the one-sinusoid
    # recurrence already; only such rows get the costlier test (trained rows stay far off)
    near = ~ok & (one <= NEAR_ONE * scale)
    if part.shape[1] >= MIN_WINDOWED_LENGTH and near.any():
        ok[near] = _recurrence_residual(part[near], WINDOWED) <= tol * scale[near]
    return int(ok.sum()), int(ok.size)


def _recurrence_residual(x: np.ndarray, order: int) -> np.ndarray:
    """Per row of ``x`` (rows, n), the least-squares residual of the symmetric recurrence
    ``x[n + k] + x[n - k] = sum_{j < k} c_j (x[n + j] + x[n - j])`` (``k = order``, ``x[n]`` alone
    for ``j = 0``), with each row's own coefficients ``c``. A sum of ``k`` sampled sinusoids
    (a sinusoid times a Hann or Hamming window is three) satisfies it exactly."""
    n, k = x.shape[1], order
    if k == 1:  # one coefficient: its least-squares value in closed form
        mid, around = x[:, 1:-1], x[:, 2:] + x[:, :-2]
        c = (around * mid).sum(1) / np.maximum((mid * mid).sum(1), 1e-300)
        return np.linalg.norm(around - c[:, None] * mid, axis=1)
    mid = slice(k, n - k)
    cols = [x[:, mid]] + [x[:, k + j:n - k + j] + x[:, k - j:n - k - j] for j in range(1, k)]
    a = np.stack(cols, axis=2)  # (rows, m, k)
    target = x[:, 2 * k:] + x[:, :n - 2 * k]
    ata = np.einsum("rmi,rmj->rij", a, a) + 1e-300 * np.eye(k)
    coef = np.linalg.solve(ata, np.einsum("rmi,rm->ri", a, target)[..., None])[..., 0]
    return np.linalg.norm(target - np.einsum("rmi,ri->rm", a, coef), axis=1)


def _sinusoid_rows(x: np.ndarray, chunk: int = 256) -> float:
    """Fraction of the rows of ``x`` (rows, n) that are sampled sinusoids (zero rows skipped).

    Rows are tested in chunks, and the count stops (returning 0.0) as soon as the fraction could
    not reach ``FRACTION`` even if every remaining row were a sinusoid: trained weights are
    settled by their first chunk.
    """
    if x.shape[0] == 0 or x.shape[1] < MIN_LENGTH:
        return 0.0
    # the first chunk alone can settle it: just over the share of rows that may fail
    chunk = min(chunk, int(x.shape[0] * (1 - FRACTION)) + 2)
    sinusoids, nonzero = 0, 0
    for start in range(0, x.shape[0], chunk):
        ok, n = _sinusoids(x[start:start + chunk])
        sinusoids += ok
        nonzero += n
        left = max(x.shape[0] - start - chunk, 0)
        if left and (sinusoids + left) / (nonzero + left) < FRACTION:  # even if all the rest are
            return 0.0
    return sinusoids / nonzero if nonzero else 0.0


def _columns_may_be(w: np.ndarray) -> bool:
    """Whether the columns of ``w`` (rows, n) can still be sinusoids by their first
    :data:`SCREEN_ROWS` values. A sinusoid is one on any stretch of it, so the fraction of
    columns that pass there (those zero there counted as passing) bounds the whole test's from
    above: below ``FRACTION``, the whole test fails too, having read only the leading rows
    instead of every page of the tensor."""
    if w.shape[0] <= SCREEN_ROWS or w.shape[1] == 0:
        return True
    ok, nonzero = _sinusoids(w[:SCREEN_ROWS].T)
    return (ok + w.shape[1] - nonzero) / w.shape[1] >= FRACTION


#: Answers of :func:`is_signal_constant` by array (its id, with a weak reference that proves the
#: id is still that array's): ``match`` and the same-values test ask of the same weights.
_ANSWERS: dict[int, tuple] = {}


def is_signal_constant(weight: np.ndarray) -> bool:
    """Whether ``weight`` (any shape, first axis = units) looks computed rather than trained:
    most of its rows, or most of its columns, are sampled sinusoids. Either way round, it is read
    along its memory order, and a trained matrix is turned away by its first rows, so only they
    are read (not every page of a memory-mapped weight). Asked again of the same array, the
    first answer is given."""
    known = _ANSWERS.get(id(weight))
    if known is not None and known[0]() is weight:
        return known[1]
    answer = _is_signal_constant(weight)
    try:
        ref = weakref.ref(weight, lambda _, key=id(weight): _ANSWERS.pop(key, None))
    except TypeError:  # not weakly referable: not remembered
        return answer
    _ANSWERS[id(weight)] = (ref, answer)
    return answer


def _is_signal_constant(weight: np.ndarray) -> bool:
    if weight.ndim < 2:
        return False
    w = weight.reshape(weight.shape[0], -1)
    if not w.flags.c_contiguous and w.T.flags.c_contiguous:
        w = w.T  # stored the other way round (a MatMul's (in, out)): read along its memory
    return _sinusoid_rows(w) >= FRACTION or (_columns_may_be(w)
                                             and _sinusoid_rows(w.T) >= FRACTION)
