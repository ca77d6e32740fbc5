"""Choosing the points to measure: stratified by class, leaning towards the boundary, adaptive.

:func:`priority_order` ranks all data rows once: classes take turns (so every predicted class is
represented from the first round), and within a class rows with a small margin between A's top
two scores come first more often (weighted sampling without replacement, weight
``1 - margin + 0.1``). Rounds then take the next rows of this order until the confidence interval
of the estimate is narrow enough or the budget is spent.
"""

from __future__ import annotations

import math

import numpy as np


def margins(scores: np.ndarray | None, kind: str, n: int) -> np.ndarray:
    """Top-1 minus top-2 probability per row, in [0, 1] (zeros when unknown)."""
    if scores is None or kind not in ("logits", "probabilities") or scores.shape[1] < 2:
        return np.zeros(n)
    p = scores
    if kind == "logits":
        z = scores - scores.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    top = np.sort(p, axis=1)
    return np.clip(top[:, -1] - top[:, -2], 0.0, 1.0)


def priority_order(labels: np.ndarray, margin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All row indices, classes interleaved, near-boundary rows favoured within each class."""
    weight = 1.0 - margin + 0.1
    keys = rng.random(labels.size) ** (1.0 / weight)  # Efraimidis-Spirakis weighted order
    per_class = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        per_class.append(list(rows[np.argsort(-keys[rows])]))
    order = []
    while any(per_class):
        for queue in per_class:
            if queue:
                order.append(queue.pop(0))
    return np.asarray(order, dtype=np.int64)


def mean_ci95(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and a 95% normal-approximation interval (clipped to [0, 1])."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if v.size < 2:
        return m, 0.0, 1.0
    half = 1.96 * float(v.std(ddof=1)) / math.sqrt(v.size)
    return m, max(0.0, m - half), min(1.0, m + half)
