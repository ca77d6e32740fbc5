"""The unit-order test: did B keep A's order of hidden units?

Statistic, per symmetry class of ``n`` units: the number ``F`` of A's units whose equivariant
matching (:func:`.classes.match_classes`) pairs them with B's unit of the same index.

Null: B was initialised independently of A and trained by a procedure equivariant to permuting
each class's units (SGD, Adam and the usual i.i.d. initialisations are). Then every class's
matching is a uniformly random permutation, independent across classes (see :mod:`.classes`),
and ``P(F >= f)`` is the tail of the number of fixed points of a random permutation of ``n``,
exactly (rencontres numbers): ``P(F = j) = (1/j!) sum_{i=0}^{n-j} (-1)^i / i!``. Classes are
combined by Fisher's method, exact because they are independent.

Fine-tuning, pruning, quantisation, noise and re-export keep unit order: ``F`` stays near ``n``
and ``p`` near ``1/n!``. A model whose units were permuted (an evasion, an exporter that
reorders) gives no evidence here, which is never evidence of independence: :mod:`.aligned`
looks at such copies. Where the null's assumption fails (B initialised from a permuted copy
of A's init, units tied by a symmetric initialisation), so does the exactness.
"""

from __future__ import annotations

import math
from functools import lru_cache

from scipy.special import logsumexp

from onnx_lineage.evidence.combine import P_FLOOR, fisher
from onnx_lineage.evidence.result import TestResult

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
    rows = []
    for m in usable:
        p = fixed_point_tail(m.cls.width, m.fixed_points)
        rows.append({"name": m.cls.name, "layers": sorted(m.layers), "units": m.cls.width,
                     "statistic": m.fixed_points, "fixed_points": m.fixed_points,
                     "similarity": m.similarity, "p_value": p})
    p = fisher([r["p_value"] for r in rows])
    best = fisher([fixed_point_tail(m.cls.width, m.cls.width) for m in usable])
    power = best <= alpha
    kept = sum(m.fixed_points for m in usable)
    units = sum(m.cls.width for m in usable)
    return TestResult(
        NAME, float(kept / units), p, NULL, "Fisher (classes independent under the null)", rows,
        power, (f"a copy in A's unit order would get p = {best:.1e}"
                + ("" if power else f" > {alpha:.2g}: too few units to tell")),
        f"{kept} of {units} units matched to their own index in B")
