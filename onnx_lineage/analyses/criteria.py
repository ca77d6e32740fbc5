"""Losses along the interpolation path: one small callable per criterion.

All take the model's raw prediction scores for n rows and return one number.
"""

from __future__ import annotations

import numpy as np


def log_probs(scores: np.ndarray, kind: str) -> np.ndarray:
    """Log-probabilities (n, k) from logits or probabilities."""
    if kind == "probabilities":
        return np.log(np.clip(scores, 1e-7, 1.0))
    z = scores - scores.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def cross_entropy(scores: np.ndarray, kind: str, targets: np.ndarray) -> float:
    """Mean cross-entropy of ``scores`` (n, k) against integer ``targets`` (n,)."""
    lp = log_probs(scores, kind)
    t = np.clip(targets, 0, lp.shape[1] - 1)
    return float(-lp[np.arange(len(t)), t].mean())


def error_rate(labels: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of ``labels`` (n,) that differ from ``targets`` (n,)."""
    return float(np.mean(labels != targets))


def functional_deviation(f: np.ndarray, fa: np.ndarray, fb: np.ndarray, t: float) -> float:
    """How far outputs ``f`` (n, d) leave the line ``(1 - t) fa + t fb``.

    Relative to the mean distance between ``fa`` and ``fb``, so the number is comparable across
    models; for models without classes (embeddings, regression).
    """
    line = (1 - t) * fa + t * fb
    gap = np.linalg.norm(fa - fb, axis=1).mean()
    return float(np.linalg.norm(f - line, axis=1).mean() / max(gap, 1e-12))


def excess_over_line(ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values[i] - ((1 - a_i) values(0) + a_i values(1))`` for a curve sorted by position ``a_i``."""
    a = np.asarray(ts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    return v - ((1 - a) * v[0] + a * v[-1])
