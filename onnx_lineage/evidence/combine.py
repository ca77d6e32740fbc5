"""Combining p-values: each method named, with the dependence it is valid under.

* :func:`fisher`: independent p-values (the unit-order test's classes, independent by
  construction). Valid, conservative, for discrete p-values that are never smaller than uniform.
* :func:`bonferroni`: any dependence (the tests of one pair, which all read the same B), with
  weights fixed before the data is seen.
* :func:`holm`: which of several hypotheses to reject, under any dependence (which layers are
  shared).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import chdtrc  # scipy.stats would add most of a second to every start

#: The smallest p-value written out; smaller ones are reported as this (about 1e-300).
P_FLOOR = 1e-300


def fisher(p_values) -> float:
    """Fisher's method: ``-2 sum log p`` against chi-squared with ``2k`` degrees of freedom.

    Parameters
    ----------
    p_values : sequence of float in (0, 1]
        Independent under the null. Discrete p-values with ``P(p <= u) <= u`` keep it valid.

    Returns
    -------
    float
        The combined p-value (1.0 for an empty sequence).
    """
    logs = [math.log(max(p, P_FLOOR)) for p in p_values]
    if not logs:
        return 1.0
    return float(max(chdtrc(2 * len(logs), -2.0 * sum(logs)), 0.0))


def bonferroni(p_values: dict, weights: dict) -> float:
    """Weighted Bonferroni: ``min_i p_i / w_i`` (capped at 1) over the tests that ran.

    Valid under any dependence when the weights sum to at most 1 and are fixed before the data:
    the null is rejected at level ``alpha`` when some test has ``p_i <= w_i * alpha``.

    Parameters
    ----------
    p_values : dict of name to float or None
        None: the test did not run (its weight is spent, not redistributed).
    weights : dict of name to float
    """
    vals = [p / weights[k] for k, p in p_values.items() if p is not None and weights.get(k)]
    return float(min(1.0, min(vals))) if vals else 1.0


def holm(p_values, alpha: float) -> np.ndarray:
    """Holm's step-down procedure: which hypotheses to reject at family-wise level ``alpha``.

    Parameters
    ----------
    p_values : sequence of float
    alpha : float

    Returns
    -------
    ndarray of bool, one per p-value
    """
    p = np.asarray(p_values, dtype=np.float64)
    reject = np.zeros(p.size, dtype=bool)
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] > alpha / (p.size - rank):
            break
        reject[i] = True
    return reject
