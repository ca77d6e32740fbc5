"""The unit-order test: did B keep A's order of hidden units?

Statistic, per symmetry class of ``n`` units: the number ``F`` of A's units whose equivariant
matching (:func:`.classes.match_classes`) pairs them with B's unit of the same index.

Null: B was initialised independently of A and trained by a procedure equivariant to permuting
each class's units (SGD, Adam and the usual i.i.d. initialisations are). Then every class's
matching is a uniformly random permutation, independent across classes (see :mod:`.classes`),
and ``P(F >= f)`` is the tail of the number of fixed points of a random permutation of ``n``,
exactly (rencontres numbers): ``P(F = j) = (1/j!) sum_{i=0}^{n-j} (-1)^i / i!``. Classes are
combined by Fisher's method, exact because they are independent.

A class where one model has fewer units (a width-pruned child, :mod:`~onnx_lineage.matching.pruning`)
cannot keep indices, only order: the child's kept units are the parent's in the parent's order,
with gaps. Its statistic is the number ``S`` of *successions* in the matched sequence (the
smaller model's real units, each with the other model's unit it was matched to, read in index
order and ranked): places where the next unit's rank is one more than this one's. Under the null
the ranks are a uniformly random permutation of the ``k`` kept units, and ``P(S = s) =
b(k - 1 - s) / (k * s!)`` exactly, with ``b(m) = b(m - 1) + b(m - 2) / m``, ``b(0) = b(1) = 1``
(permutations with ``s`` successions: ``C(k - 1, s)`` times OEIS A000255). A pruned child in
order has ``S = k - 1``, ``p = 1/k!``.

Fine-tuning, pruning, quantisation, noise and re-export keep unit order: ``F`` stays near ``n``
and ``p`` near ``1/n!``. A model whose units were permuted (an evasion, an exporter that
reorders) gives no evidence here, which is never evidence of independence: :mod:`.aligned`
looks at such copies. Where the null's assumption fails (B initialised from a permuted copy
of A's init, units tied by a symmetric initialisation), so does the exactness.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.special import logsumexp

from onnx_lineage.evidence.combine import P_FLOOR, fisher
from onnx_lineage.evidence.result import TestResult
from onnx_lineage.evidence.rows import OrderRow, SuccessionRow

NAME = "unit_order"
NULL = ("B initialised independently of A and trained equivariantly to permuting each class's "
        "units: every class's matching of B's units to A's is a uniformly random permutation, "
        "independent across classes")


@lru_cache(maxsize=4096)
def _log_derangement_ratio(m: int) -> float:
    """``log(sum_{i=0}^{m} (-1)^i / i!)`` (the share of permutations of ``m`` without fixed
    points); ``-inf`` for ``m = 1``."""
    if m == 1:
        return -math.inf
    total = 0.0
    for i in range(min(m, 40) + 1):  # beyond 40 terms the sum equals 1/e in float64
        total += (-1) ** i / math.factorial(i)
    return math.log(total)


def fixed_point_tail(n: int, f: int) -> float:
    """``P(F >= f)`` for the fixed points ``F`` of a uniformly random permutation of ``n``.

    Parameters
    ----------
    n : int
        Units of the class.
    f : int
        Observed fixed points.

    Returns
    -------
    float in (0, 1], floored at :data:`~.combine.P_FLOOR`
    """
    if f <= 0:
        return 1.0
    terms = [-math.lgamma(j + 1) + _log_derangement_ratio(n - j) for j in range(f, n + 1)]
    return float(max(math.exp(min(logsumexp(terms), 0.0)), P_FLOOR))


@lru_cache(maxsize=64)
def _log_b(n: int) -> tuple:
    """``log b(m)`` for ``m = 0..n`` (see the module docstring)."""
    b = [1.0, 1.0]
    for m in range(2, n + 1):
        b.append(b[-1] + b[-2] / m)
    return tuple(math.log(x) for x in b[:n + 1])


def succession_tail(k: int, s: int) -> float:
    """``P(S >= s)`` for the successions ``S`` of a uniformly random permutation of ``k``.

    Returns
    -------
    float in (0, 1], floored at :data:`~.combine.P_FLOOR`
    """
    if s <= 0 or k < 2:
        return 1.0
    log_b = _log_b(k)
    terms = [log_b[k - 1 - j] - math.log(k) - math.lgamma(j + 1) for j in range(s, k)]
    return float(max(math.exp(min(logsumexp(terms), 0.0)), P_FLOOR))


def successions(perm: np.ndarray, side: str, kept: int) -> tuple[int, int]:
    """Successions of a pruned class's matching, and the number of kept units.

    Parameters
    ----------
    perm : ndarray of shape (width,)
        A's unit ``u`` matched to B's unit ``perm[u]``.
    side : str
        The model with fewer units (``"a"`` or ``"b"``): its first ``kept`` units are real.
    """
    if side == "a":
        seq = perm[:kept]
    else:
        units = np.flatnonzero(perm < kept)  # A's units matched to B's real units, in A's order
        seq = perm[units]
    ranks = np.argsort(np.argsort(seq))
    return int(np.sum(np.diff(ranks) == 1)), int(seq.size)


def _row(m) -> tuple[OrderRow | SuccessionRow, float]:
    """One class's row, and the p-value the best any copy could get."""
    where = {"name": m.cls.name, "layers": sorted(m.layers), "units": m.cls.width}
    if m.cls.pruned:
        s, k = successions(m.perm, *m.cls.pruned)
        return SuccessionRow(**where, statistic=s, successions=s, kept=k,
                             p_value=succession_tail(k, s),
                             in_order=f"{s} of {k - 1} in sequence ({k} kept)",
                             similarity=m.similarity), succession_tail(k, k - 1)
    return OrderRow(**where, statistic=m.fixed_points, fixed_points=m.fixed_points,
                    in_order=str(m.fixed_points),
                    p_value=fixed_point_tail(m.cls.width, m.fixed_points),
                    similarity=m.similarity), fixed_point_tail(m.cls.width, m.cls.width)


def unit_order_test(matches: list, alpha: float) -> TestResult:
    """Exact unit-order test over the matched classes.

    Parameters
    ----------
    matches : list of ClassMatch
        From :func:`.classes.match_classes`.
    alpha : float
        The level at which this test will be read (its share of the verdict's alpha), used only
        to judge its power: whether a copy of A in A's unit order would reach it.
    """
    usable = [m for m in matches if m.cls.width >= 2]
    if not usable:
        return TestResult(NAME, None, None, NULL, power=False,
                          power_reason="no class of two or more permutable units",
                          reason="no hidden units to compare in order (a model without hidden "
                                 "layers, or none that both models share)")
    rows, bests = zip(*[_row(m) for m in usable])
    p = fisher([r.p_value for r in rows])
    best = fisher(bests)
    power = best <= alpha
    kept = sum(m.fixed_points for m in usable if not m.cls.pruned)
    units = sum(m.cls.width for m in usable if not m.cls.pruned)
    pruned = [r for r in rows if isinstance(r, SuccessionRow)]
    parts = [f"{kept} of {units} units matched to their own index in B"] if units else []
    if pruned:
        parts.append(f"in {len(pruned)} pruned layer(s), {sum(r.successions for r in pruned)} "
                     f"of {sum(r.kept - 1 for r in pruned)} kept units followed their "
                     "predecessor in order")
    reason = "; ".join(parts)
    return TestResult(
        NAME, float(kept / units) if units else None, p, NULL,
        "Fisher (classes independent under the null)", list(rows),
        power=power, power_reason=(f"a copy in A's unit order would get p = {best:.1e}"
                                   + ("" if power else f" > {alpha:.2g}: too few units to tell")),
        reason=reason)
