"""Direction samplers for boundary searches, chosen by name.

* ``random``: isotropic Gaussian directions, unit length.
* ``manifold``: towards a data point that model A labels differently (stays near the data).
* ``adversarial``: an estimate of the boundary normal, from label queries around a boundary point
  found by a first search (gradient-free, HopSkipJump-style: the mean of random perturbations
  signed by whether they cross).

Every sampler returns unit directions of shape (R, d), float32, and draws from the generator it
is given.
"""

from __future__ import annotations

import numpy as np

from kernels.boundary import perturbation_points

DIRECTIONS = ("random", "manifold", "adversarial")


def check_names(names) -> list[str]:
    """Validate direction names; unknown ones raise a ValueError listing the valid ones."""
    bad = [n for n in names if n not in DIRECTIONS]
    if bad:
        raise ValueError(f"unknown direction(s) {', '.join(bad)}: choose from {', '.join(DIRECTIONS)}")
    return list(names)


def _unit(u: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(u, axis=1, keepdims=True)
    return (u / np.maximum(n, 1e-12)).astype(np.float32)


def random_directions(origin: np.ndarray, d: int, rng: np.random.Generator) -> np.ndarray:
    """One Gaussian unit direction per ray; ``origin`` (R,) only sets R."""
    return _unit(rng.standard_normal((origin.size, d), dtype=np.float32))


def manifold_targets(origin: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each ray, a data row with another label of A (a random row when none has).

    Parameters
    ----------
    origin : ndarray of shape (R,), int64
    labels : ndarray of shape (n,), int64
        A's label of every data row.

    Returns
    -------
    ndarray of shape (R,), int64
    """
    n = labels.size
    out = rng.integers(n, size=origin.size)  # rows for origins whose label is the only one
    by_label = np.argsort(labels, kind="stable")  # rows grouped by label
    classes, start, count = np.unique(labels[by_label], return_index=True, return_counts=True)
    cls_of_ray = np.searchsorted(classes, labels[origin])
    others = n - count[cls_of_ray]  # rows with another label than the ray's origin
    has = others > 0
    # the k-th row of another label: skip the origin's own block in the grouped order
    k = np.floor(rng.random(origin.size) * np.maximum(others, 1)).astype(np.int64)
    k = np.where(k >= start[cls_of_ray], k + count[cls_of_ray], k)
    out[has] = by_label[k[has]]
    return out


def manifold_directions(x: np.ndarray, origin: np.ndarray, labels: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """Unit directions from ``x[origin]`` towards a row that A labels differently."""
    target = manifold_targets(origin, labels, rng)
    return _unit(x[target] - x[origin])


def normal_estimate(boundary: np.ndarray, base_label: np.ndarray, radius: np.ndarray,
                    label_fn, rng: np.random.Generator, samples: int = 24) -> np.ndarray:
    """Estimate the boundary normal at each boundary point from label queries.

    The same ``samples`` random unit perturbations serve every point (scaled by its radius), so
    the estimate at each point is the boundary normal projected on one shared random subspace.

    Parameters
    ----------
    boundary : ndarray of shape (P, d), float32
        Points just across A's boundary.
    base_label : ndarray of shape (P,)
        A's label on the near side.
    radius : ndarray of shape (P,)
        Perturbation size per point.
    label_fn : callable
        ``label_fn(points (m, d)) -> labels (m,)`` (A's labels).

    Returns
    -------
    ndarray of shape (P, d), float32
        Unit vectors pointing from the near side across the boundary.
    """
    p, d = boundary.shape
    delta = _unit(rng.standard_normal((samples, d), dtype=np.float32))  # (S, d)
    pts = np.empty((p * samples, d), np.float32)
    perturbation_points(np.ascontiguousarray(boundary, np.float32), radius.astype(np.float32),
                        delta, pts)
    crossed = label_fn(pts).reshape(p, samples) != base_label[:, None]
    sign = np.where(crossed, 1.0, -1.0).astype(np.float32)
    # centre the signs so an unbalanced neighbourhood does not bias the estimate (HopSkipJump)
    sign -= sign.mean(axis=1, keepdims=True)
    return _unit(sign @ delta)
