"""Batched bracket-and-bisect state machine for boundary searches along rays.

Each ray starts at a data point ``x`` and walks along a direction ``u``; the model's label at
``x + t u`` is compared with the label at ``x``. The state of ray ``r``:

* ``lo[r]``: largest ``t`` known to keep the label of ``x`` (starts at 0);
* ``hi[r]``: smallest ``t`` known to have another label (``inf`` until found);
* ``t[r]``: the next ``t`` to query;
* ``phase[r]``: ``BRACKET`` (grow ``t`` geometrically), ``BISECT`` (halve ``[lo, hi]``),
  ``FOUND`` (``hi - lo <= max(rtol * hi, atol)``: boundary at ``hi``), ``CENSORED`` (no flip up to ``tmax``).

Queries per ray: the bracketing steps, ``ceil(log_growth(t* / t0)) + 1``, plus about
``log2((growth - 1) / rtol)`` bisection steps.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.labels import argmax_rows

BRACKET = 0
BISECT = 1
FOUND = 2
CENSORED = 3


@njit(nogil=True)
def boundary_step(active, labels, base, lo, hi, t, phase, flip, tmax, growth, rtol, atol, next_active):
    """Update every queried ray with the label seen at its query point.

    Parameters
    ----------
    active : ndarray of shape (k,), int64
        Indices of the rays queried in this round.
    labels : ndarray of shape (k,), int64
        Label at ``x + t[r] u`` for each queried ray ``r = active[j]``.
    base : ndarray of shape (R,), int64
        Label at ``x`` for every ray.
    lo, hi, t, tmax : ndarray of shape (R,), float64
        Ray state (updated in place); ``tmax`` bounds the walk.
    phase : ndarray of shape (R,), int8
        Updated in place.
    flip : ndarray of shape (R,), int64
        Label at ``hi`` (updated in place).
    growth : float
        Bracketing factor (> 1).
    rtol, atol : float
        Bisection stops when ``hi - lo <= max(rtol * hi, atol)`` (``atol``: one step of a discrete
        path; 0 for continuous inputs).
    next_active : ndarray of shape (>= k,), int64
        Receives the rays of ``active`` still searching, in order (must not alias ``active``).

    Returns
    -------
    int
        Number of rays still searching (the length of ``next_active`` that was written).
    """
    remaining = 0
    for j in range(active.shape[0]):  # one loop, no per-ray helper calls (they cost 25x here)
        r = active[j]
        tq = t[r]
        if labels[j] != base[r]:
            hi[r] = tq
            flip[r] = labels[j]
            if phase[r] == BRACKET:
                phase[r] = BISECT
        else:
            lo[r] = tq
            if phase[r] == BRACKET:
                if tq >= tmax[r]:
                    phase[r] = CENSORED
                else:
                    t[r] = min(tq * growth, tmax[r])
        if phase[r] == BISECT:
            if hi[r] - lo[r] <= max(rtol * hi[r], atol):
                phase[r] = FOUND
            else:
                t[r] = 0.5 * (lo[r] + hi[r])
        if phase[r] < FOUND:
            next_active[remaining] = r
            remaining += 1
    return remaining


@njit(nogil=True)
def ray_points(x, u, origin, active, t, lo_bound, hi_bound, out):
    """Query points ``x[origin[r]] + t[r] * u[r]`` for the active rays, clipped to the bounds.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
        Data points (flattened).
    u : ndarray of shape (R, d), float32
        Unit directions, one per ray.
    origin : ndarray of shape (R,), int64
        Row of ``x`` each ray starts from.
    active : ndarray of shape (k,), int64
    t : ndarray of shape (R,), float64
    lo_bound, hi_bound : ndarray of shape (d,), float32
        Valid input range per feature.
    out : ndarray of shape (>= k, d), float32
        Written in place.
    """
    d = x.shape[1]
    for j in range(active.shape[0]):
        r = active[j]
        xo, ur, row = x[origin[r]], u[r], out[j]
        s = np.float32(t[r])
        for i in range(d):  # branch-free, so the loop vectorises
            row[i] = min(max(xo[i] + s * ur[i], lo_bound[i]), hi_bound[i])


@njit(nogil=True)
def scores_step(scores, active, base, lo, hi, t, phase, flip, tmax, growth, rtol, next_active,
                x, u, origin, lo_bound, hi_bound, out):
    """One whole step of a continuous search from the model's class scores, in one call:
    labels (row argmax), every ray's update (:func:`boundary_step` with ``atol = 0``), and the
    next query points of the rays still searching (:func:`ray_points`).

    Parameters
    ----------
    scores : ndarray of shape (k, C), float32
        Logits or probabilities at the query points of ``active``.
    out : ndarray of shape (>= k, d), float32
        Receives the next query points, row ``j`` for ray ``next_active[j]`` (may be the buffer
        the scores were computed from).

    The other parameters are those of :func:`boundary_step` and :func:`ray_points`.

    Returns
    -------
    int
        Rays still searching; -1 if a score was NaN or infinite (nothing is updated then).
    """
    labels = np.empty(scores.shape[0], np.int64)
    if not argmax_rows(scores, labels):
        return -1
    remaining = boundary_step(active, labels, base, lo, hi, t, phase, flip, tmax, growth, rtol,
                              0.0, next_active)
    ray_points(x, u, origin, next_active[:remaining], t, lo_bound, hi_bound, out)
    return remaining


@njit(nogil=True)
def perturbation_points(points, radius, delta, out):
    """Every point moved by every shared perturbation: ``out[p * S + s] = points[p] + radius[p] * delta[s]``.

    Parameters
    ----------
    points : ndarray of shape (P, d), float32
    radius : ndarray of shape (P,), float32
    delta : ndarray of shape (S, d), float32
        Unit perturbations, the same for every point.
    out : ndarray of shape (P * S, d), float32
        Written in place.
    """
    n_s, d = delta.shape
    for p in range(points.shape[0]):
        base, r = points[p], radius[p]
        for s in range(n_s):
            row, ds = out[p * n_s + s], delta[s]
            for i in range(d):
                row[i] = base[i] + r * ds[i]
