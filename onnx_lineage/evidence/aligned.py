"""The aligned test: is B a permuted copy of A?

Where B's units were permuted (an evasion, or an exporter that reorders them), unit order says
nothing. After matching B's units to A's (:func:`.classes.match_classes`), a copy keeps the
incoming weights of every unit: their matched cosine stays near 1.

Statistic, per symmetry class: ``s``, the median over A's units of the cosine between its
incoming weights and those of its matched unit of B (``ClassMatch.similarity``).

Null: B was trained independently of A. No symmetry makes this exact: alignment brings
independently trained models close (Git Re-Basin), and how close depends on the layer. Its
distribution was measured on independent pairs of many architectures (``benchmarks/fit_null.py``
writes :data:`NULL_FILE`): ``logit(s)`` is modelled as normal with a mean linear in the log of
the fan-in and of the width, shifted up to the family whose classes sat highest above that line,
and the spread of the family that varied most. Per-class p-values are the normal tail beyond
``s``; classes are combined by Bonferroni (valid under any dependence). The p-value is therefore
calibrated, not exact: its error rate is the one measured on independent pairs that were not used
for the fit (benchmarks/RESULTS.md), and p-values far below the fit's range are reported as
:data:`FLOOR`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from scipy.special import ndtr  # the normal cdf, without importing scipy.stats

from onnx_lineage.evidence.result import TestResult
from onnx_lineage.evidence.rows import AlignedRow

NAME = "aligned"
NULL_FILE = Path(__file__).with_name("aligned_null.json")
#: Reported p-values stop here: the null's tail is a fitted model, measured up to about 1e-3.
FLOOR = 1e-9
#: Cosines are clipped to [-1 + EPS, 1 - EPS] before the logit (an exact copy gives 1).
EPS = 1e-4


@dataclass(frozen=True)
class NullModel:
    """``logit(s) ~ Normal(b0 + b_fan_in * log(fan_in) + b_width * log(width) + shift, spread)``,
    with ``fan_in`` at most ``fan_in_max`` (the largest measured: beyond it the negative slope
    would lower the null)."""

    b0: float
    b_fan_in: float
    b_width: float
    shift: float
    spread: float
    fan_in_max: int
    source: str

    def mean(self, fan_in: int, width: int) -> float:
        return (self.b0 + self.b_fan_in * math.log(min(max(fan_in, 1), self.fan_in_max))
                + self.b_width * math.log(max(width, 1)) + self.shift)

    def p_value(self, similarity: float, fan_in: int, width: int) -> float:
        """Upper tail of ``similarity`` under the null, at least :data:`FLOOR`."""
        s = min(max(similarity, -1 + EPS), 1 - EPS)
        z = (math.log(s / (1 - s)) if s > 0 else -math.inf)
        return float(max(ndtr((self.mean(fan_in, width) - z) / self.spread), FLOOR))


@lru_cache(maxsize=1)
def null_model() -> NullModel:
    """The committed null model (:data:`NULL_FILE`)."""
    d = json.loads(NULL_FILE.read_text())
    return NullModel(d["b0"], d["b_fan_in"], d["b_width"], d["shift"], d["spread"],
                     d["fan_in_max"], source=d["source"])


NULL = ("B trained independently of A: after matching, the incoming weights of a class's units "
        "agree no more than those of the independent pairs the null was measured on")


def aligned_test(matches: list, alpha: float, model: NullModel | None = None) -> TestResult:
    """Calibrated test of "B is no permuted copy of A" over the matched classes.

    Parameters
    ----------
    matches : list of ClassMatch
    alpha : float
        The level this test will be read at (its share of the verdict's alpha), used only to judge
        its power: whether an exact copy, in any unit order, would reach it.
    model : NullModel, optional
        Default: the committed one.
    """
    model = model or null_model()
    usable = [m for m in matches if m.cls.width >= 2]
    if not usable:
        return TestResult(NAME, None, None, NULL, power=False, exact=False,
                          power_reason="no class of two or more permutable units",
                          reason="no hidden units to align")
    rows = [AlignedRow(name=m.cls.name, layers=sorted(m.layers), units=m.cls.width,
                       statistic=m.similarity, similarity=m.similarity, fan_in=m.fan_in,
                       p_value=model.p_value(m.similarity, m.fan_in, m.cls.width))
            for m in usable]
    k = len(rows)
    p = min(1.0, k * min(r.p_value for r in rows))
    best = min(1.0, k * min(model.p_value(1.0, m.fan_in, m.cls.width) for m in usable))
    power = best <= alpha
    median = sorted(r.similarity for r in rows)[(k - 1) // 2]
    top = max(rows, key=lambda r: r.similarity - model.mean(r.fan_in, r.units))
    return TestResult(
        NAME, median, p, f"{NULL} (measured on {model.source})",
        "Bonferroni over classes (any dependence)", rows, power=power,
        power_reason=f"an exact copy in any unit order would get p = {best:.1e}"
        + ("" if power else f" > {alpha:.2g}: these layers align too well by chance"),
        reason=f"matched incoming weights agree with cosine {median:.2f} at the median class, "
        f"{top.similarity:.2f} in {top.name}", exact=False)
