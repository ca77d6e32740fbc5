"""``attribute``: which parents a model was made from, and in what share.

Each candidate parent ``A_i`` is matched to B with B's unit order as the frame
(``match(B, A_i)``, the per-unit scales alignment applies undone: :func:`.lowrank.permuted_only`)
and tested for independence from B by the data-free tests (:func:`onnx_lineage.evidence.data_free`,
combined as ``determine`` combines them): its p-value is that of "B shares nothing with this
parent", exact or calibrated as those tests are. Only parents related at ``alpha`` enter the fit,
so a model the tests cannot tie to B gets no share.

Per layer that B and every related parent (and the base) hold, all of the layer's parameters
flattened, B's ``y`` is fitted by least squares as a combination of the parents' ``x_i``:

* with a base ``Q`` (task arithmetic): ``y - q = sum_i w_i (x_i - q)``;
* without one (a linear or spherical average): ``y = sum_i w_i x_i``.

A parent's share is the mean of its per-layer ``w_i``, with a 95% t interval over the layers (the
layers taken as replicates: an approximation, not an exact interval). The remainder, B minus its
fit, is read per weight matrix as :mod:`.lowrank` reads a difference: its singular values above
the rounding B's values and the fitted ones can carry (the coarser float format's relative
rounding of each value). No rank anywhere: B is the combination. A low rank: an adapter trained
on top. A full rank: B was trained after, or made by a recipe that is not one linear combination
per layer: TIES and DARE trim, drop and elect signs value by value, and this version does not fit
them (it says so rather than give shares).

Recipes said: a copy of one parent; ``linear`` (no base, weights summing to 1); ``slerp`` (two
parents, the weights of a spherical interpolation of each layer's two tensors: ``sin((1-t) W) /
sin W`` and ``sin(t W) / sin W``, ``W`` the angle between them, one ``t`` per layer);
``task arithmetic`` (a base); ``adapter`` (one parent and a low-rank remainder); ``fine-tune``
(one parent and a full-rank remainder); ``unfitted`` otherwise.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from onnx_lineage import memory
from onnx_lineage.analyses.lowrank import MATRIX_KINDS, permuted_only, rank_above
from onnx_lineage.errors import UsageError
from onnx_lineage.evidence import data_free, decide, unit_order
from onnx_lineage.evidence.registry import registered
from onnx_lineage.evidence.same_values import FLOOR, RELATIVE
from onnx_lineage.matching import match
from onnx_lineage.model.loading import as_loaded
from onnx_lineage.results import Result

#: The recipes that make B a merge of several models.
MERGES = ("linear", "slerp", "task arithmetic", "ties", "dare")
#: A share whose interval lies within this of a value is taken as that value (recipes).
EXACT = 0.01
#: TIES and DARE are read in tensors of at least this many values, and recognised where at
#: least VALUEWISE of them are the recipe's to rounding.
VALUEWISE_FROM = 64
VALUEWISE = 0.99
#: ... with each parent's coefficient recurring in at least this share of the values it changed.
RECURS = 0.05
#: SLERP: largest gap between a layer's fitted weights and the spherical ones.
SLERP_GAP = 1e-4


@dataclass(frozen=True)
class Share:
    """One candidate parent.

    Attributes
    ----------
    parent : str
    p_value : float
        The data-free tests combined: "B shares nothing with this parent".
    related : bool
        ``p_value`` at most ``alpha``: the parent enters the fit.
    share : float or None
        Mean of its per-layer weights (None: not related, no share).
    interval : list of float or None
        95% t interval over the layers.
    p_share : float or None
        The test of "B derives from the other parents alone, trained after or not", where the fit
        is exact (B is the combination to rounding in every weight matrix, value by value for
        TIES and DARE): :data:`FLOOR` where the fit without this parent is not exact (training
        noise that lands exactly in the span of this parent has probability 0, whatever its
        distribution), 1 where it still is. None where B is no exact combination: a fine-tune
        moves its model partly along directions its siblings' training also took, which the fit
        reads as a share, so no share of a model trained after is tested (a t test over the
        tensors, used before, gave a fine-tune's sibling p 1e-22 to 5e-4 in
        benchmarks/merges.py).
    """

    parent: str
    p_value: float
    related: bool
    share: float | None = None
    interval: list | None = None
    p_share: float | None = None


@dataclass(frozen=True)
class LayerFit:
    """One parameter tensor's fit.

    Attributes
    ----------
    layer : int
        B's layer index.
    key : str
        The parameter (``weight``, ``bias``, ...).
    weights : list of float
        The related parents' weights, in order.
    residual : float
        ``||y - fit|| / ||y - q||`` (without a base: over the distance to the nearest parent).
    rank : int or None
        The remainder's rank above rounding, for a weight matrix (None: not a matrix, or more
        than the ranks looked for).
    low : bool or None
        A weight matrix whose remainder is rounding or of rank at most half its smaller side
        (None: not a weight matrix).
    angle : float or None
        Two parents: the angle between their tensors (radians; SLERP's).
    size : int
        Its number of values (its weight in the shares).
    valuewise : str or None
        ``ties`` or ``dare`` where the tensor is that recipe's value by value (``weights`` are
        then its coefficients), else None.
    """

    layer: int
    key: str
    weights: list
    residual: float
    rank: int | None
    low: bool | None
    angle: float | None = None
    size: int = 0
    valuewise: str | None = None


@dataclass(frozen=True)
class AttributionResult(Result):
    """What ``attribute`` found (see the module docstring)."""

    model: str
    base: str | None
    alpha: float
    parents: list
    recipe: str
    statement: str
    layers: list
    remainder_rank: int | None
    notes: list = field(default_factory=list)
    seconds: float = 0.0


def attribute(b, parents, base=None, *, alpha: float = 0.01, seed: int = 0, progress=None,
              max_memory: int | str | None = None) -> AttributionResult:
    """Which of ``parents`` (paths or LoadedModel) model ``b`` was made from, and in what share.

    Parameters
    ----------
    b : path or LoadedModel
    parents : sequence of path or LoadedModel
        At least one candidate parent.
    base : path or LoadedModel, optional
        The model the parents were fine-tuned from (task vectors ``A_i - Q``).
    alpha : float
        Level of each parent's independence test.
    seed : int
        Breaks ties in the matchings.
    progress : callable, optional
        Called with a description of each step as it starts.
    max_memory : int or str, optional
        The run's memory budget.
    """
    parents = list(parents)
    if not parents:
        raise UsageError("attribute needs at least one candidate parent")
    step, t0 = progress or (lambda what: None), time.perf_counter()
    with memory.limited(max_memory):
        step("reading the models")
        b = as_loaded(b)
        rng = np.random.default_rng(seed)
        shares, frames, notes = [], [], []
        for p in parents:
            p = as_loaded(p)
            step(f"matching {p.name} to {b.name} and testing independence")
            a = aligned(b, p, alpha, rng)
            shares.append(Share(p.name, a.p_value, a.related))
            if a.related:
                frames.append(a.frame)
        q = None
        if base is not None:
            base = as_loaded(base)
            step(f"matching the base {base.name} to {b.name}")
            a = aligned(b, base, alpha, rng)
            if not a.related:
                notes.append(f"the base {base.name} is not related to {b.name} at the level: "
                             "task vectors from it say nothing of B's lineage")
            q = a.frame
        step("fitting B's layers as combinations of the related parents")
        fits = _fits(frames, q)
        needed = _needed(frames, q) if _exact(fits) else [None] * len(frames)
        return _result(b.name, None if base is None else base.name, alpha, shares, fits, needed,
                       notes, time.perf_counter() - t0)


@dataclass(frozen=True)
class Aligned:
    """Another model in B's frame.

    Attributes
    ----------
    p_value : float
        The data-free tests combined: "B shares nothing with it".
    related : bool
        ``p_value`` at most ``alpha``.
    frame : dict
        B's layer index -> (B's layer, its parameters, the other model's in B's unit order), for
        the layers the matching paired.
    """

    p_value: float
    related: bool
    frame: dict


def aligned(b, other, alpha: float, rng: np.random.Generator) -> Aligned:
    """``other`` (a LoadedModel) matched to ``b`` with B's unit order as the frame and tested
    for independence from B (module docstring)."""
    m = match(b, other, rng=rng)
    free = data_free(m, alpha)
    v = decide(free.tests, alpha)
    return Aligned(v.p_value, v.related is True, _in_b_frame(m, _order_kept(free, alpha)))


def _order_kept(free, alpha: float) -> bool:
    """Whether the unit-order test finds B's units in the other model's order (at its share
    of ``alpha``): then they are compared in place, not matched (weight matching can swap
    units of a merge that lies far from each parent)."""
    p = free.unit_order.p_value
    return p is not None and p <= registered(unit_order.NAME).level(alpha)


def _in_b_frame(m, in_place: bool) -> dict:
    """B's layer index -> (B's layer, its parameters, the other model's in B's unit order),
    for the layers ``m`` (``match(B, other)``) paired: in its own order (``in_place``), or
    permuted by the matching with alignment's scales undone."""
    corr = m.correspondence
    if in_place:
        theirs = {p["b"]: corr.b_own[p["a"]] for p in m.pairs if p["a"] in corr.b_own}
    else:
        theirs, _ = permuted_only(m)
    layers = {x.index: x for x in corr.a_layers}
    return {p["a"]: (layers[p["a"]], corr.a_params[p["a"]], theirs[p["b"]])
            for p in m.pairs if p["b"] in theirs and p["a"] in layers}


def _exact(fits: list) -> bool:
    """Whether the fit leaves nothing beyond rounding in any weight matrix (value by value for
    TIES and DARE)."""
    return bool(fits) and all(f.rank == 0 for f in fits if f.low is not None)


def _needed(frames: list, q: dict | None) -> list:
    """Per related parent, of an exact fit: whether the fit without it is no longer exact."""
    return [not _exact(_fits(frames[:i] + frames[i + 1:], q, exact_only=True))
            for i in range(len(frames))]


def _fits(frames: list, q: dict | None, exact_only: bool = False) -> list:
    """One LayerFit per parameter tensor of the layers every frame (and the base) pairs, in B's
    layer order (``exact_only``: only whether each is exact, no low-rank remainder looked for)."""
    if not frames:
        return []
    common = set.intersection(*(set(f) for f in frames))
    if q is not None:
        common &= set(q)
    out = []
    for i in sorted(common):
        layer, own = frames[0][i][0], frames[0][i][1]
        for key in sorted(own):
            others = [f[i][2].get(key) for f in frames] + ([q[i][2].get(key)] if q else [])
            if key != "eps" and all(o is not None and np.shape(o) == np.shape(own[key])
                                    for o in others):
                out.append(_fit(layer, key, own[key], others[:len(frames)],
                                others[-1] if q else None, exact_only))
    return out


def _fit(layer, key: str, own: np.ndarray, others: list, q, exact_only: bool = False
         ) -> LayerFit:
    """Least squares of B's tensor on the parents' (module docstring); ``exact_only``: no
    low-rank remainder is looked for where the fit is not exact (its rank is then the plain
    fit's)."""
    y = np.asarray(own, np.float64).ravel()
    xs = np.stack([np.asarray(o, np.float64).ravel() for o in others], axis=1)
    origin = np.asarray(q, np.float64).ravel() if q is not None else np.zeros_like(y)
    target, basis = y - origin, xs - origin[:, None]
    w, *_ = np.linalg.lstsq(basis, target, rcond=None)
    remainder = target - basis @ w
    scale = (np.linalg.norm(target) if q is not None
             else min(np.linalg.norm(y - xs[:, j]) for j in range(xs.shape[1])))
    residual = float(np.linalg.norm(remainder) / scale) if scale > 0 else 0.0
    matrix = layer.kind in MATRIX_KINDS and key == "weight" and np.ndim(own) >= 2
    relative = RELATIVE.get(layer.quant, RELATIVE[None])
    rank = low = valuewise = None
    rows = np.shape(own)[0] if matrix else 0
    if matrix:
        size = np.abs(y) + np.abs(xs) @ np.abs(w) + np.abs(origin) * abs(1.0 - float(np.sum(w)))
        bound = relative * float(np.linalg.norm(size)) + 0.5 * layer.step * math.sqrt(y.size)
        rank = rank_above(remainder.reshape(rows, -1), bound)
    if q is not None and (rank != 0 if matrix else residual > 1e-6) and y.size >= VALUEWISE_FROM:
        found = value_by_value(target, basis, np.abs(y) + np.abs(xs).sum(1) + np.abs(origin),
                               relative)
        if found is not None:
            (valuewise, w), rank = found, (0 if matrix else None)
    if matrix and rank != 0 and not exact_only:  # a low-rank remainder leaks into the fit
        w, rank = _with_low_rank(basis, target, rows, bound, w)
    if matrix:
        low = rank is not None and rank <= min(rows, y.size // rows) // 2
    angle = None
    if xs.shape[1] == 2 and q is None:
        n0, n1 = np.linalg.norm(xs[:, 0]), np.linalg.norm(xs[:, 1])
        if n0 > 0 and n1 > 0:
            angle = float(np.arccos(np.clip(xs[:, 0] @ xs[:, 1] / (n0 * n1), -1.0, 1.0)))
    return LayerFit(layer.index, key, [float(v) for v in w], residual, rank=rank, low=low,
                    angle=angle, size=int(y.size), valuewise=valuewise)


def value_by_value(target: np.ndarray, basis: np.ndarray, magnitude: np.ndarray,
                   relative: float) -> tuple[str, np.ndarray] | None:
    """TIES or DARE, read value by value (module docstring): ``(recipe, weights)`` where at
    least :data:`VALUEWISE` of the values are one of the recipe's candidates to rounding, else
    None. ``target`` (n,) is B's task vector, ``basis`` (n, k) the parents'."""
    n, k = basis.shape
    masks = np.array(list(itertools.product((0.0, 1.0), repeat=k)))  # (2^k, k): who is kept
    tol = 4.0 * relative * magnitude
    best = None
    for recipe in ("dare", "ties"):
        coef = _ratio_modes(target, basis, pooled=recipe == "ties")
        if coef is None:
            continue
        if recipe == "dare":  # the kept values, each rescaled by its parent's coefficient
            candidates = basis @ (masks * coef).T
        else:  # the mean of the kept values that agree in sign, times one coefficient
            counts = np.maximum(masks.sum(1), 1.0)
            candidates = coef[0] * (basis @ (masks / counts[:, None]).T)
        err = np.abs(candidates - target[:, None])
        pick = np.argmin(err, axis=1)
        ok = err[np.arange(n), pick] <= tol
        if ok.mean() >= VALUEWISE and (best is None or ok.mean() > best[0]):
            # each parent's share of values kept, where keeping it is told from dropping it
            clear = ok[:, None] & (np.abs(basis * coef) > 10.0 * tol[:, None])
            kept = np.array([masks[pick[clear[:, i]], i].mean() if clear[:, i].any() else 1.0
                             for i in range(k)])
            best = (float(ok.mean()), recipe, coef * kept if recipe == "dare" else coef)
    return None if best is None else (best[1], best[2])


def ratio_mode(ratios: np.ndarray) -> tuple[float | None, float]:
    """The most frequent of ``ratios`` (found to 4 decimals, then the median of the ratios there)
    and the share of the finite non-zero ratios at it; ``(None, 0.0)`` where there are none."""
    ratios = ratios[np.isfinite(ratios) & (ratios != 0)]
    if ratios.size == 0:
        return None, 0.0
    values, counts = np.unique(np.round(ratios, 4), return_counts=True)
    top = int(np.argmax(counts))
    # the exact coefficient: the median of the ratios that round to the mode
    return (float(np.median(ratios[np.round(ratios, 4) == values[top]])),
            float(counts[top] / ratios.size))


def _ratio_modes(target: np.ndarray, basis: np.ndarray, pooled: bool) -> np.ndarray | None:
    """Each parent's most frequent ratio ``target / basis`` (:func:`ratio_mode`), where a value
    of B is a single parent's times its coefficient; ``pooled``: one ratio for all. None where no
    ratio recurs in at least :data:`RECURS` of the values the parent changed (a fine-tune leaves
    most of an embedding's rows as they were: the rows of tokens its text never holds)."""
    def mode(ratios: np.ndarray) -> float | None:
        value, share = ratio_mode(ratios)
        return value if share >= RECURS else None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = target[:, None] / basis
    if pooled:
        found = mode(ratios.ravel())
        return None if found is None else np.full(basis.shape[1], found)
    found = [mode(ratios[:, i]) for i in range(basis.shape[1])]
    return None if any(f is None for f in found) else np.array(found)


def _with_low_rank(basis: np.ndarray, target: np.ndarray, rows: int, bound: float,
                   w: np.ndarray) -> tuple[np.ndarray, int | None]:
    """``target ~ basis @ w + L``, ``L`` of the smallest rank ``r`` that leaves only rounding
    (``bound``), by alternating least squares from ``w``; the rank is tried at each gap of the
    remainder's spectrum (largest ratio of neighbouring singular values first), up to half the
    matrix's smaller side. ``(w, r)``, or the plain fit and None when no such rank exists."""
    s = np.linalg.svd((target - basis @ w).reshape(rows, -1), compute_uv=False)
    half = min(rows, target.size // rows) // 2
    ratios = s[:half] / np.maximum(s[1:half + 1], 1e-300)
    for r in [int(k) + 1 for k in np.argsort(-ratios)[:3]]:
        v = w
        for _ in range(25):
            u, sv, vt = np.linalg.svd((target - basis @ v).reshape(rows, -1), full_matrices=False)
            low = ((u[:, :r] * sv[:r]) @ vt[:r]).ravel()
            last, (v, *_) = v, np.linalg.lstsq(basis, target - low, rcond=None)
            if np.max(np.abs(v - last)) < 1e-12:
                break
        left = (target - basis @ v).reshape(rows, -1)
        if rank_above(left, bound) == r:
            return v, r
    return w, None


def _result(name: str, base: str | None, alpha: float, shares: list, fits: list, needed: list,
            notes: list, seconds: float) -> AttributionResult:
    """Shares with their intervals and tests (``needed``: :func:`_needed`, or None per parent
    where the fit is not exact), the remainder's rank, the recipe and its sentence."""
    related = [k for k, s in enumerate(shares) if s.related]
    weights = np.array([f.weights for f in fits]).reshape(len(fits), len(related))
    sizes = np.array([f.size for f in fits], np.float64)
    for j, k in enumerate(related):
        share, interval = _mean_interval(weights[:, j], sizes)
        p_share = None if needed[j] is None else FLOOR if needed[j] else 1.0
        shares[k] = Share(shares[k].parent, shares[k].p_value, True, share, interval, p_share)
    matrices = [f for f in fits if f.low is not None]
    beyond = [f for f in matrices if f.rank != 0]  # a remainder beyond rounding
    rank = (max(f.rank for f in beyond) if beyond and all(f.low for f in beyond)
            else (0 if not beyond else None))
    recipe, said = _recipe([shares[k] for k in related], fits, base, rank, bool(beyond))
    return AttributionResult(model=name, base=base, alpha=alpha, parents=shares, recipe=recipe,
                             statement=said, layers=fits, remainder_rank=rank, notes=notes,
                             seconds=seconds)


def _mean_interval(w: np.ndarray, sizes: np.ndarray) -> tuple:
    """The mean of per-tensor weights, each weighed by its number of values, and its 95% t
    interval (the weighted standard error, over the tensors less one degree of freedom; none
    from one tensor)."""
    if w.size == 0:
        return None, None
    p = sizes / sizes.sum()
    mean = float(p @ w)
    if w.size < 2:
        return mean, None
    se = math.sqrt(float(np.sum(p * p * (w - mean) ** 2)) * w.size / (w.size - 1))
    half = float(stats.t.ppf(0.975, w.size - 1)) * se
    return mean, [mean - half, mean + half]


def _near(share: Share, value: float) -> bool:
    """The share's interval (or the share, from one tensor) lies within EXACT of ``value``."""
    lo, hi = share.interval or [share.share, share.share]
    return value - EXACT <= lo and hi <= value + EXACT


def _contributes(share: Share) -> bool:
    """The share is beyond EXACT and its interval (where it has one) excludes 0."""
    if abs(share.share) <= EXACT:
        return False
    return share.interval is None or share.interval[0] > 0 or share.interval[1] < 0


def _recipe(used: list, fits: list, base: str | None, rank, beyond: bool) -> tuple[str, str]:
    """The recipe that fits (module docstring) and its sentence; ``used``: the related parents'
    shares, ``rank``: the remainder's (0: rounding; None: full somewhere)."""
    if not used:
        return "none", "B is related to none of these models at the level: no share is given"
    if not fits:
        return "none", "B has no parameter tensor in common with every related parent"
    named = ", ".join(f"{s.parent} {s.share:.3f}" + (
        f" ({s.interval[0]:.3f} to {s.interval[1]:.3f})" if s.interval else "") for s in used)
    kept = [s for s in used if _contributes(s)]
    one = kept[0].parent if len(kept) == 1 else None
    valuewise = {f.valuewise for f in fits if f.valuewise}
    if len(valuewise) == 1 and rank is not None and not beyond:
        recipe = valuewise.pop()
        return recipe, (f"B is a {recipe.upper()} merge of the task vectors of {named} (from "
                        f"{base}; shares: each parent's coefficient times the share of its values "
                        "kept)" if recipe == "dare" else f"B is a TIES merge of the task vectors "
                        f"of {named} (from {base}; the shares: the merge's coefficient)")
    if rank is None:
        if one is not None:
            return "fine-tune", f"B is {one} trained further (a remainder of full rank): {named}"
        return "unfitted", (f"B is not one linear combination of its {len(used)} related parents "
                            f"per tensor (a remainder of full rank); the closest fit: {named}. "
                            "Trained after, or made by TIES, DARE or another recipe that works "
                            "value by value, which this version does not fit")
    if beyond:
        whom = one or f"the combination {named}"
        return "adapter", f"B is {whom} with a low-rank adapter of rank {rank} merged on top"
    if one is not None and _near(kept[0], 1.0):
        return "copy", f"B holds {one}'s weights to their rounding"
    total = sum(s.share for s in used)
    if base is not None:
        same = " (weights summing to 1: a linear average of them too)" if abs(
            total - 1.0) <= EXACT else ""
        return "task arithmetic", f"B = {base} + the task vectors of {named}{same}"
    if len(used) == 2 and _slerp(fits):
        return "slerp", f"B is a spherical interpolation (SLERP) of its two parents: {named}"
    if abs(total - 1.0) <= EXACT:
        return "linear", f"B is a linear average of its parents: {named}"
    return "linear", (f"B is a linear combination of its parents (weights summing to "
                      f"{total:.3f}): {named}")


def _slerp(fits: list) -> bool:
    """Whether every tensor's two weights are a spherical interpolation's (module docstring) and
    some tensor's are not a linear one's (their sum exceeds 1 by what its angle gives)."""
    spherical = linear = True
    for f in fits:
        if f.angle is None or f.angle < 1e-3:  # parallel tensors: both recipes average
            continue
        w0, w1 = f.weights
        t = math.atan2(w1 * math.sin(f.angle), w0 + w1 * math.cos(f.angle)) / f.angle
        s0 = math.sin((1 - t) * f.angle) / math.sin(f.angle)
        s1 = math.sin(t * f.angle) / math.sin(f.angle)
        spherical &= (max(abs(w0 - s0), abs(w1 - s1)) <= SLERP_GAP
                      and -SLERP_GAP <= t <= 1 + SLERP_GAP)
        linear &= abs(w0 + w1 - 1.0) <= SLERP_GAP
    return spherical and not linear
