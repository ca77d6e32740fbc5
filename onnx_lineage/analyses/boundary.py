"""Batched boundary search: every ray of a round advances together, one forward pass per step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.boundary import CENSORED, FOUND, boundary_step, scores_step
from onnx_lineage.errors import ModelError


@dataclass(frozen=True)
class RaySearch:
    """Outcome of a search, per ray.

    Attributes
    ----------
    distance : ndarray of shape (R,), float64
        Boundary distance (``hi``), ``inf`` where censored.
    flip : ndarray of shape (R,), int64
        Label just across the boundary (-1 where censored).
    found : ndarray of shape (R,), bool
    queries : int
        Rows run through the model.
    steps : int
        Forward passes (rounds) used.
    """

    distance: np.ndarray
    flip: np.ndarray
    found: np.ndarray
    queries: int
    steps: int


def search(label_fn, space, u: np.ndarray, origin: np.ndarray, base: np.ndarray, *, t0: float,
           tmax: float, growth: float = 2.0, rtol: float = 1e-3, atol: float = 0.0,
           max_steps: int = 200, score_fn=None, capacity: int = 0,
           name: str = "model") -> RaySearch:
    """Bracket then bisect the first label change along every ray.

    Parameters
    ----------
    label_fn : callable
        ``label_fn(moved, companions, origin_rows) -> labels (k,)``: the model's labels at the
        query points (one batched forward pass).
    score_fn : callable, optional
        ``score_fn(moved, companions, origin_rows) -> scores (k, C)``, float32: class scores whose
        row argmax is the label. When given for a continuous space, each step is one kernel call
        (:func:`kernels.boundary.scores_step`) instead of labelling, updating and building the
        next points separately; the result is the same. ``moved`` then holds the whole query
        buffer: its first ``k = len(origin_rows)`` rows are the query points, the rest (earlier
        points) may pad the forward pass (:meth:`Runner.run`'s ``rows``).
    capacity : int
        Rows of the query buffer when more than R (:meth:`Runner.padded_rows`).
    space : ContinuousSpace or DiscreteSpace
    u : ndarray of shape (R, d), float32
        Directions (ignored by discrete spaces).
    origin : ndarray of shape (R,), int64
        Data row of each ray.
    base : ndarray of shape (R,), int64
        The model's label at each ray's origin.
    t0, tmax : float
        First query and farthest query along each ray.
    """
    R = origin.size
    lo, hi = np.zeros(R), np.full(R, np.inf)
    t = np.full(R, float(t0))
    phase = np.zeros(R, np.int8)
    flip = np.full(R, -1, np.int64)
    tm = np.full(R, float(tmax))
    queries, steps = 0, 0
    active, spare = np.arange(R, dtype=np.int64), np.empty(R, np.int64)  # ping-pong ray lists
    buffer = space.buffer(max(R, capacity))  # query points, reused by every step
    if score_fn is not None and not space.discrete:
        space.points(u, origin, active, t, buffer)
        whole = buffer.reshape((len(buffer),) + space.shape)
        while active.size and steps < max_steps:
            scores = score_fn(whole, {}, origin[active])
            queries += active.size
            steps += 1
            k = scores_step(scores, active, base, lo, hi, t, phase, flip, tm, growth, rtol, spare,
                            space.x, u, origin, space.lo, space.hi, buffer)
            if k < 0:
                raise ModelError(f"{name}: the model's outputs contain NaN or Inf")
            active, spare = spare[:k], active
    while active.size and steps < max_steps:
        moved, comp = space.points(u, origin, active, t, buffer)
        labels = np.asarray(label_fn(moved, comp, origin[active]), dtype=np.int64)
        queries += active.size
        steps += 1
        k = boundary_step(active, labels, base, lo, hi, t, phase, flip, tm, growth, rtol, atol,
                          spare)
        active, spare = spare[:k], active
    found = phase == FOUND
    dist = np.where(found, hi, np.inf)
    flip = np.where(phase == CENSORED, -1, flip)
    return RaySearch(dist, flip, found, queries, steps)
