"""The same-values test: do B's trained values equal A's, to the precision of the coarser model?

A re-release, a conversion between frameworks, a float16 or int8 export keeps every trained value
up to rounding. Two independent trainings do not: a value of B lands within the rounding
tolerance of A's value at the same position about as often as any value of B's layer would. The
test needs no symmetry class, so a layer that no class reaches, or a model with none, is judged
too.

Statistic, per matched layer pair: ``K``, the number of positions whose values agree within the
tolerance ``t_i = r |a_i| + s`` (``r``: the coarser float format's relative rounding, a few
float32 ulps for two float32 models; ``s``: half the sum of the two layers' quantization steps).
Positions where either value is exactly 0 (pruned, or never trained) are left out.

The test runs only where the two models share at least two stacked layers: a model without
hidden units (a linear or logistic model) is convex in its parameters, and its independent
trainings reach the same values.

Null: B trained independently of A. Then B's value at a position is unrelated to A's: it agrees
with probability ``q_i``, read from B's own values of that tensor (the share within ``t_i`` of
``a_i``, or their density over a wider window around ``a_i`` times ``2 t_i``, whichever is larger),
and agreements at different positions are independent. ``K`` then has a Poisson-binomial law of
mean ``sum q_i`` (estimated from an evenly spread subsample of the positions and of B's values,
scaled to all of them); the p-value is the Chernoff bound on its upper tail, with the mean taken
:data:`SAFETY` times larger. The assumptions are not exact (positions within a trained layer are
not independent), so the test is calibrated, not exact: its error rate is the one measured on the
calibration benchmark's independent pairs (benchmarks/RESULTS.md).

B is compared in its own order, with its convolution kernels' last two axes swapped (a re-export
that transposes images), and in A's order after matching; the best is Bonferroni-corrected for the
three, and an order chosen by matching for every order it could have chosen (``log(n!)`` per
permuted axis). Layers are combined by Bonferroni (any dependence). Layers the matching did not
pair are searched too (a B layer equal to another A layer of its shape: depth-changed models
whose layers were paired with gaps), each corrected for every candidate pair, and the two
searches by Bonferroni.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from onnx_lineage.evidence.result import TestResult
from onnx_lineage.evidence.rows import ValuesRow
from onnx_lineage.matching.constants import is_signal_constant
from onnx_lineage.model.weights import release_pages

NAME = "same_values"
#: The null's mean number of agreements is taken this many times larger than estimated.
SAFETY = 4.0
#: Positions read per tensor at most (a fixed stride over larger ones).
MAX_POSITIONS = 1 << 18
#: Positions whose chance of agreeing under the null is computed, per tensor (a fixed stride;
#: the mean is scaled to every position), and values of B it is read from.
NULL_POSITIONS = 1 << 14
NULL_REFERENCE = 1 << 17
#: Tensors of at least this many values are read in :data:`BLOCK`-value runs at evenly spaced
#: starts instead of at a stride (the same count of positions, the same ones in both models):
#: a stride under a page's worth of values touches every page of a memory-mapped file, so a
#: 7B model's weights were read whole, twice, for 1/64 of their values. The runs follow A's
#: memory order (a weight A stores transposed is read along its transpose, in both models). No
#: model the null was measured on has a tensor this large.
BLOCKED_FROM = 1 << 24
BLOCK = 2048
#: Relative rounding of each storage format, as a tolerance (a few ulps for float32, so that a
#: transpose or a re-export's arithmetic does not count as a change).
RELATIVE = {None: 2.0 ** -20, "fp16": 2.0 ** -10, "bf16": 2.0 ** -7}
#: Layer kinds that stack: with two of them matched, the model has hidden units and is not convex
#: in its parameters (a linear or logistic model's independent trainings reach the same values).
STACKED = {"dense", "conv", "conv_transpose", "embedding", "lstm", "gru", "rnn"}
#: Reported p-values stop here (the bound itself goes far lower).
FLOOR = 1e-300

NULL = ("B trained independently of A: at each position B's value agrees with A's within the "
        f"coarser model's rounding no more often than {SAFETY:g}x the share of B's own values of "
        "that tensor near A's value, independently across positions")


@dataclass(frozen=True)
class _Order:
    """One way to read B's values in A's positions, with its multiplicity (log of the number of
    orders it stands for); ``own``: B's stored positions, where each weight's own step holds."""

    name: str
    params: dict
    log_orders: float
    own: bool = False


@dataclass(frozen=True)
class _Tolerance:
    """``relative`` rounding of the coarser float format, ``absolute`` half the two layers'
    largest quantization steps, and ``weight``: half the two steps of each weight value, where
    a model holds block-quantized weights (in the weight's shape; read in B's own order)."""

    relative: float
    absolute: float
    weight: np.ndarray | None = None


def same_values_test(m, alpha: float) -> TestResult:
    """Calibrated test of "B's trained values are not A's" over the matched layers.

    Parameters
    ----------
    m : MatchResult
        Its layer pairs (``pairs``), A's parameters, B's in its own order and in A's.
    alpha : float
        The level the test will be read at (its share of the verdict's alpha), used only to judge
        its power: whether A itself, in B's format, would reach it.
    """
    corr = m.correspondence
    a_layers = {x.index: x for x in corr.a_layers}
    b_layers = {x.index: x for x in corr.b_layers}
    stacked = [p for p in m.pairs if p["kind"] in STACKED]
    if len(stacked) < 2:
        return TestResult(NAME, None, None, NULL, power=False, exact=False,
                          power_reason="no hidden layer in common",
                          reason="not run: without hidden layers a model is convex in its "
                                 "parameters, and independent trainings reach the same values")
    rows = []
    for pair in m.pairs:
        ai, bj = pair["a"], pair["b"]
        if ai not in corr.a_params or ai not in corr.b_own:
            continue
        la, lb = a_layers[ai], b_layers[bj]
        row = _layer(corr.a_params[ai],
                     _orders(corr.b_own[ai], corr.b_aligned.get(ai, {}), la.kind),
                     _tolerance(la, lb))
        if row is not None:
            rows.append({"name": f"layer {ai}", "layers": [ai], "b": bj, **row})
        release_pages()  # the layer's values are read: their mapped pages need not stay
    log_k = math.log(max(len(rows), 1))
    unpaired, candidates = _unpaired(m, a_layers, b_layers)
    for r in unpaired:  # counted for every pair of layers of one shape that could have agreed
        r["log_p"] += math.log(candidates) - log_k
    rows += unpaired
    if not rows:
        return TestResult(NAME, None, None, NULL, power=False, exact=False,
                          power_reason="no matched layer with trained values in both models",
                          reason="no matched layer to compare")
    log_p = min(r["log_p"] for r in rows) + log_k + (math.log(2) if candidates else 0.0)
    best = min(r["log_best"] for r in rows) + log_k
    rows = [ValuesRow(**{k: v for k, v in r.items() if k not in ("log_p", "log_best")},
                      p_value=_p(r["log_p"]), log10_p=r["log_p"] / math.log(10)) for r in rows]
    agree = sum(r.agree for r in rows)
    compared = sum(r.compared for r in rows)
    power = best <= math.log(alpha)
    top = min(rows, key=lambda r: r.log10_p)
    return TestResult(
        NAME, agree / compared if compared else 0.0, _p(log_p), NULL,
        "Bonferroni over layers (any dependence); orders of B Bonferroni within each layer",
        rows, power=power,
        power_reason=f"A itself in B's format would get p = {_p(best):.1e}"
        + ("" if power else f" > {alpha:.2g}: too few trained values to tell"),
        reason=f"{agree:,} of {compared:,} trained values agree within the coarser model's "
        f"rounding; most in {top.name} ({top.agree:,} of {top.compared:,}, in "
        f"{top.order})", exact=False)


#: Values of each weight compared first when looking for a layer's values among unpaired layers.
_PREFILTER = 4096


def _unpaired(m, a_layers: dict, b_layers: dict) -> tuple[list[dict], int]:
    """Layers of B whose values equal those of an A layer that the matching did not pair with it
    (a model whose depth differs, its layers paired in order with gaps, can pair a branch of A
    with the other branch of B): every pair of stacked layers of one weight shape not already
    paired is a candidate; those whose first :data:`_PREFILTER` values mostly agree are
    compared whole, in B's own order. Returns their rows and the number of candidates (the
    Bonferroni factor of each row: the whole search counts, not only what passed the filter)."""
    paired = {(p["a"], p["b"]) for p in m.pairs}
    # fixed signal-processing constants (a DFT basis) are shared by unrelated models bit for bit
    fixed_a = {e["a"] for e in m.excluded} | {i for i, x in a_layers.items() if _fixed(x)}
    fixed_b = {e["b"] for e in m.excluded} | {i for i, x in b_layers.items() if _fixed(x)}
    rows, candidates, heads = [], 0, {}

    def head(side: str, layer, turned: bool) -> np.ndarray:
        # the first values in C order (of the transpose, ``turned``: a huge weight that A stores
        # transposed, read along its memory), once per layer, without a copy of the whole
        # weight (a transposed view's reshape copied all of it for every candidate pair)
        key = (side, layer.index, turned)
        if key not in heads:
            w = np.asarray(layer.weight)
            heads[key] = (w.T if turned else w).flat[:_PREFILTER].astype(np.float64)
        return heads[key]

    for la in a_layers.values():
        if la.kind not in STACKED or la.index in fixed_a:
            continue
        for lb in b_layers.values():
            if (la.index, lb.index) in paired or lb.kind != la.kind or lb.index in fixed_b or \
                    lb.weight.shape != la.weight.shape:
                continue
            candidates += 1
            tol = _tolerance(la, lb)
            w = np.asarray(la.weight)
            turned = w.size >= BLOCKED_FROM and _memory_transposed(w)
            head_a, head_b = head("a", la, turned), head("b", lb, turned)
            near = np.abs(head_a - head_b) <= tol.relative * np.abs(head_a) + tol.absolute
            if near.mean() < 0.5:
                continue
            row = _layer(la.params, [_Order("own order", lb.params, 0.0, own=True)], tol)
            if row is not None:
                rows.append({"name": f"layer {la.index} (B's layer {lb.index}, not paired)",
                             "layers": [la.index], "b": lb.index, **row})
    return rows, candidates


def _fixed(layer) -> bool:
    """A fixed signal-processing constant (:func:`~onnx_lineage.matching.constants.
    is_signal_constant`), never trained: left out of the evidence, as ``match`` leaves it."""
    return layer.kind in ("dense", "conv", "embedding") and is_signal_constant(layer.weight)


def _orders(own: dict, aligned: dict, kind: str) -> list[_Order]:
    """B's own order; its kernels' last two axes swapped; A's order after matching (when matching
    moved B: counted for every permutation of each axis it could have chosen)."""
    orders = [_Order("B's own order", own, 0.0, own=True)]
    w = own.get("weight")
    if kind == "conv" and w is not None and w.ndim == 4 and w.shape[2] == w.shape[3] > 1:
        orders.append(_Order("B's own order, kernels transposed",
                             dict(own, weight=np.swapaxes(w, 2, 3)), 0.0))
    if aligned and any(aligned.get(key) is not v for key, v in own.items()):
        shape = (w if w is not None else next(iter(own.values()))).shape
        log_orders = float(sum(gammaln(d + 1) for d in shape[:2]))
        orders.append(_Order("A's unit order", aligned, log_orders))
    return orders


def _tolerance(la, lb) -> _Tolerance:
    """Tolerance of two layers' values: the coarser float format's rounding, and half the two
    quantization steps (each value's own, for block-quantized weights)."""
    relative = max(RELATIVE.get(la.quant, RELATIVE[None]), RELATIVE.get(lb.quant, RELATIVE[None]))
    weight = None
    if (la.steps is not None or lb.steps is not None) and la.weight.shape == lb.weight.shape:
        weight = 0.5 * ((la.steps if la.steps is not None else la.step)
                        + (lb.steps if lb.steps is not None else lb.step))
        weight = np.broadcast_to(np.asarray(weight, np.float64), la.weight.shape)
    return _Tolerance(relative, 0.5 * (la.step + lb.step), weight)


def _layer(a_params: dict, orders: list[_Order], tol: _Tolerance) -> dict | None:
    """Agreements of one layer pair in the best of ``orders``, with its log p-value and the log
    p-value an exact copy would get (``log_best``)."""
    log_n = math.log(len(orders))
    best, log_best = None, 0.0
    for order in orders:
        counts = _count(a_params, order.params, tol, order.own)
        if counts is None:
            continue
        agree, compared, mean = counts
        log_p = _log_tail(agree, SAFETY * mean) + order.log_orders + log_n
        log_best = min(log_best, _log_tail(compared, SAFETY * mean) + log_n)
        if best is None or log_p < best["log_p"]:
            best = {"order": order.name, "agree": agree, "compared": compared,
                    "statistic": agree / compared, "expected": SAFETY * mean, "log_p": log_p}
    return None if best is None else dict(best, log_best=log_best)


def _count(a_params: dict, b_params: dict, tol: _Tolerance, own: bool):
    """``(agreements, positions compared, their expected number under the null)`` over the
    parameters both layers hold in one shape, or None with nothing to compare; ``own``: B is in
    its stored positions (each weight value's own step applies)."""
    agree, compared, mean = 0, 0, 0.0
    for key, a in a_params.items():
        b = b_params.get(key)
        if key == "eps" or b is None or np.shape(a) != np.shape(b) or np.ndim(a) == 0:
            continue
        a = np.asarray(a)
        turned = _memory_transposed(a)  # positions in A's memory order, the same ones in B
        a, b = _positions(a, turned), _positions(np.asarray(b), turned)
        keep = (a != 0) & (b != 0) & np.isfinite(a) & np.isfinite(b)
        absolute = (_positions(tol.weight, turned)[keep] if key == "weight" and own
                    and tol.weight is not None else tol.absolute)
        a, b = a[keep], b[keep]
        if a.size == 0:
            continue
        t = tol.relative * np.abs(a) + absolute
        agree += int(np.count_nonzero(np.abs(a - b) <= t))
        compared += a.size
        # the null's mean from a spread subsample: every position's chance, estimated
        pick = slice(None, None, -(-a.size // NULL_POSITIONS))
        ref = np.sort(b[::-(-b.size // NULL_REFERENCE)])
        sub = a[pick]
        mean += _chance(sub, t[pick] if np.ndim(t) else t, ref) * a.size / sub.size
    return (agree, compared, mean) if compared else None


def _memory_transposed(x: np.ndarray) -> bool:
    """Whether ``x`` (canonical orientation) is a transposed view of its stored memory (a
    MatMul weight stored ``(in, out)``)."""
    return x.ndim == 2 and not x.flags.c_contiguous and x.T.flags.c_contiguous


def _positions(x: np.ndarray, turned: bool = False) -> np.ndarray:
    """``x`` flattened as float64: every ``k``-th value where it has more than
    :data:`MAX_POSITIONS`, or, from :data:`BLOCKED_FROM` values, :data:`MAX_POSITIONS` of them
    in runs of :data:`BLOCK` at evenly spaced starts (a page of the file per run, not every
    page). ``turned``: the large tensor's runs are taken along its transpose, where the
    reference model stores it that way (the positions are then the same in both models, and
    contiguous in the reference's file)."""
    if x.size < BLOCKED_FROM:
        flat = x.reshape(-1)
        stride = -(-flat.size // MAX_POSITIONS)
        return np.asarray(flat[::stride], dtype=np.float64)
    flat = (x.T if turned else x).reshape(-1)  # a view where the memory order is that one
    runs = MAX_POSITIONS // BLOCK
    starts = np.arange(runs, dtype=np.int64) * (flat.size - BLOCK) // (runs - 1)
    return np.concatenate([np.asarray(flat[s:s + BLOCK], dtype=np.float64) for s in starts])


def _chance(a: np.ndarray, t: np.ndarray, b_sorted: np.ndarray) -> float:
    """Expected number of agreements of independent values: per position, the larger of the share
    of B's values within ``t`` of ``a`` and their density over a window around ``a`` (a tenth of
    B's spread, at least ``2 t``) times ``2 t``."""
    n = b_sorted.size
    q25, q75 = b_sorted[n // 4], b_sorted[(3 * n) // 4]
    spread = (q75 - q25) / 1.349 or float(np.std(b_sorted)) or 1.0
    w = np.maximum(0.1 * spread, 2 * t)
    near = np.searchsorted(b_sorted, a + t, "right") - np.searchsorted(b_sorted, a - t, "left")
    window = np.searchsorted(b_sorted, a + w, "right") - np.searchsorted(b_sorted, a - w, "left")
    q = np.maximum(near, window * (t / w)) / n
    return float(np.minimum(q, 1.0).sum())


def _log_tail(k: int, mean: float) -> float:
    """Log of the Chernoff bound on ``P(K >= k)`` for a sum of independent Bernoulli variables of
    total mean ``mean``: ``k - mean - k log(k / mean)`` above the mean, 0 below."""
    if k <= mean or k == 0:
        return 0.0
    if mean <= 0:
        return -math.inf
    return float(k - mean - k * math.log(k / mean))


def _p(log_p: float) -> float:
    return float(min(1.0, max(math.exp(max(log_p, -745.0)), FLOOR))) if log_p < 0 else 1.0
