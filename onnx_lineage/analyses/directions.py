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
    """For each ray, a data row with another label of A (a random row when none has)."""
    n = labels.size
    out = np.empty(origin.size, np.int64)
    for k, o in enumerate(origin):
        others = np.flatnonzero(labels != labels[o])
        out[k] = rng.choice(others) if others.size else rng.integers(n)
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
    pts = boundary[:, None, :] + radius.astype(np.float32)[:, None, None] * delta[None]
    crossed = label_fn(pts.reshape(p * samples, d)).reshape(p, samples) != base_label[:, None]
    sign = np.where(crossed, 1.0, -1.0).astype(np.float32)
    # centre the signs so an unbalanced neighbourhood does not bias the estimate (HopSkipJump)
    sign -= sign.mean(axis=1, keepdims=True)
    return _unit(sign @ delta)
