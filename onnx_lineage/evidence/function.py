"""The function test: do B's gated units compute what A's compute, whatever coordinates they
are written in?

A gated layer (SwiGLU, GeGLU: ``down(act(gate x) * up x)``) gives each hidden unit two
projections of the same input. Each model is run on the same rows (onnxruntime, the projections'
outputs made outputs of the graph: :mod:`onnx_lineage.model.activations`), and A's units are
matched to B's twice, by linear assignment on the absolute correlation of their values: once
through the gate projections, once through the up projections (after Zhu et al.'s MATCH,
"Independence Tests for Language Models", ICML 2025, written here from the paper). A derived
model keeps what each unit computes, so both matchings pair a unit with the same unit of B:
after a fine-tune, a permutation of the units, a rotation of the residual stream (the values
do not change at all) or any of them together. Under independence the gate and the up
projection of one of B's units have no reason to resemble the same unit of A.

Statistic, per gated class: the number ``F`` of A's units that both matchings send to the same
unit of B (``agree`` of ``compared``).

Null: B was trained independently of A, and in every gated class each of the ``m`` units matched
(all of the narrower model's, or :data:`MAX_UNITS` of them) is sent to the same unit of B by both
matchings with probability at most :data:`INFLATION` times chance (``1 / n`` for ``n`` units on
the other side), no more often together than independently: ``F`` is then at most
Binomial(``m``, ``INFLATION / n``) in the stochastic order, whose tail is the p-value. Chance alone
(two independent random matchings, whose agreements are negatively associated) would make ``F``
about Poisson(``m / n``), the fixed points of a random permutation where ``m = n``; but
independent models trained on the same data learn some of the same features (convergent
learning), and a unit that two models both learned agrees through both projections: on
independent decoders trained on the same text
(``benchmarks/llm_family.py``, development seeds 101-106, not the reported ones) classes of 256-344
units agreed on 1.8 times chance on average and on up to 8 units, which Poisson(1) puts at 1e-5.
The null allows five times chance (8 agreements then have p = 0.13); a copy, rotated or permuted,
agrees on every unit, and a fine-tune on most. The p-value is therefore calibrated, not exact:
its error rate is the one measured on the benchmark's other seeds. Classes are combined by
Bonferroni (valid under any dependence between layers).

Units that are constant on the rows (dead, pruned to zero) are left out of both sides first:
every assignment ties on them, and ties broken alike in both matchings would agree by chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import bdtrc

from onnx_lineage.evidence.combine import P_FLOOR
from onnx_lineage.evidence.result import TestResult
from onnx_lineage.evidence.rows import FunctionRow

NAME = "function"
NULL = ("B trained independently of A: in every gated layer, B's units matched to A's by what "
        "their gate projections compute and by what their up projections compute agree on each "
        "unit with probability at most five times chance (calibrated: independent models learn "
        "some of the same features)")
#: Most units of a class matched: the narrower model's units, evenly spaced, into all of the
#: other's (a linear assignment costs about the cube of the units).
MAX_UNITS = 1024
#: How many times chance a unit's two matchings may agree under the null (module docstring).
INFLATION = 5.0
#: A unit whose values' standard deviation on the rows is at most this share of its layer's
#: largest is constant there (left out).
CONSTANT = 1e-6


@dataclass(frozen=True)
class Projection:
    """One projection of a gated class's units: A's row layer ``a`` (and ``b``, B's layer
    matched to it), and where the units lie in its output: block ``tile`` of ``tiles``."""

    a: int
    b: int
    tile: int = 0
    tiles: int = 1

    def units(self, values: np.ndarray) -> np.ndarray:
        """The class's columns of ``values`` (samples, all outputs of the layer)."""
        width = values.shape[1] // self.tiles
        return values[:, self.tile * width:(self.tile + 1) * width]


@dataclass(frozen=True)
class Gated:
    """A class of hidden units with two projections (the gate's first)."""

    cls: object
    gate: Projection
    up: Projection


def gated_classes(m) -> list[Gated]:
    """The classes of ``m`` (a MatchResult) whose units have two projections matched in both
    models: two row layers, or one row layer split into two blocks. From the architecture only."""
    to_b = {p["a"]: p["b"] for p in m.pairs}
    out = []
    for cls in m.correspondence.classes:
        if cls.kind != "units" or cls.gates or cls.span or cls.width < 2:
            continue
        tiles = dict(cls.tiles)
        views = [Projection(r, to_b[r], t, tiles.get(r, 1))
                 for r in cls.rows if r in to_b for t in range(tiles.get(r, 1))]
        if len(views) >= 2:
            out.append(Gated(cls, views[0], views[1]))
    return out


@dataclass(frozen=True)
class Values:
    """What the test reads: the gated classes and both models' layer outputs on the same rows.

    Attributes
    ----------
    gated : list of Gated
    a, b : dict of layer index to ndarray of shape (samples, outputs)
        A's layers by A's index, B's by B's.
    """

    gated: list
    a: dict
    b: dict


def function_test(values: Values | None, level: float) -> TestResult:
    """The function test on ``values`` (None: no rows were run), read at ``level``."""
    if values is None or not values.gated:
        why = ("no gated hidden units (two projections per unit) in both models" if values
               is not None else "not run: it needs data")
        return TestResult(NAME, None, None, NULL, exact=False, reason=why,
                          power_reason="no gated hidden units")
    read = [r for r in (_row(g, values) for g in values.gated) if r is not None]
    if not read:
        return TestResult(NAME, None, None, NULL, exact=False, power_reason="nothing read",
                          reason="not run: no gated layer's values hold its units as the "
                                 "weights say (another layout of the output)")
    rows, bests = zip(*read)
    k = len(rows)
    p = float(min(1.0, k * min(r.p_value for r in rows)))
    best = min(1.0, k * min(bests))
    agree, compared = sum(r.agree for r in rows), sum(r.compared for r in rows)
    return TestResult(
        NAME, agree / compared if compared else None, p, NULL, "Bonferroni over classes",
        list(rows), power=best <= level, exact=False,
        power_reason=f"a copy, however its stream is rotated or its units permuted, would get "
                     f"p = {best:.1e}" + ("" if best <= level else f" > {level:.2g}"),
        reason=f"{agree} of {compared} units matched to the same unit of B through both their "
               f"gate and their up projections, in {k} gated layer(s)")


def _row(g: Gated, values: Values) -> tuple[FunctionRow, float] | None:
    """One class's row, and the p-value a copy would get (None where a model's two projections
    do not hold as many units: their outputs are not laid out with the units last)."""
    a_gate, b_gate = g.gate.units(values.a[g.gate.a]), g.gate.units(values.b[g.gate.b])
    a_up, b_up = g.up.units(values.a[g.up.a]), g.up.units(values.b[g.up.b])
    if a_gate.shape[1] != a_up.shape[1] or b_gate.shape[1] != b_up.shape[1] or min(
            a_gate.shape[1], b_gate.shape[1]) < 2:
        return None
    live_a = _live(a_gate) & _live(a_up)
    live_b = _live(b_gate) & _live(b_up)
    left_is_a = live_a.sum() <= live_b.sum()
    (xl, yl), (xr, yr) = ((_standardised(a_gate[:, live_a]), _standardised(a_up[:, live_a])),
                          (_standardised(b_gate[:, live_b]), _standardised(b_up[:, live_b])))
    if not left_is_a:
        (xl, yl), (xr, yr) = (xr, yr), (xl, yl)
    n = xr.shape[1]
    pick = np.unique(np.linspace(0, xl.shape[1] - 1, min(xl.shape[1], MAX_UNITS)).astype(int))
    by_gate, similarity = _assign(xl[:, pick], xr)
    by_up, _ = _assign(yl[:, pick], yr)
    m, f = pick.size, int(np.sum(by_gate == by_up))
    where = {"name": g.cls.name, "layers": sorted(g.cls.layers), "units": g.cls.width}
    row = FunctionRow(**where, statistic=f, agree=f, compared=m, p_value=agreement_tail(m, n, f),
                      similarity=similarity)
    return row, agreement_tail(m, n, m)


def agreement_tail(m: int, n: int, f: int) -> float:
    """``P(F >= f)`` under the null for the agreements ``F`` of two matchings of ``m`` units into
    ``n >= m``: the Binomial(``m``, ``INFLATION / n``) tail (module docstring)."""
    rate = INFLATION / n if n else 1.0
    if f <= 0 or m == 0 or rate >= 1:
        return 1.0
    return float(max(bdtrc(f - 1, m, rate), P_FLOOR))


def _live(x: np.ndarray) -> np.ndarray:
    """Units (columns of ``x``) that are not constant on the rows."""
    sd = x.std(axis=0)
    return sd > CONSTANT * max(float(sd.max(initial=0.0)), np.finfo(np.float32).tiny)


def _assign(zx: np.ndarray, zy: np.ndarray) -> tuple[np.ndarray, float]:
    """Each column of ``zx`` (samples, m) matched to a distinct column of ``zy`` (samples,
    n >= m), both standardised (:func:`_standardised`), by maximal total absolute correlation;
    the median matched correlation."""
    corr = np.abs(zx.T @ zy) / zx.shape[0]
    rows, cols = linear_sum_assignment(corr, maximize=True)
    match = np.empty(zx.shape[1], np.int64)
    match[rows] = cols
    return match, float(np.median(corr[rows, cols]))


def _standardised(x: np.ndarray) -> np.ndarray:
    """Columns of ``x`` (samples, units; none constant) centred and scaled to unit standard
    deviation, float32 (the sums accumulated in float64)."""
    z = np.asarray(x, np.float32) - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    sd = np.sqrt(np.einsum("ij,ij->j", z, z, dtype=np.float64) / max(z.shape[0], 1))
    z /= sd.astype(np.float32)
    return z
