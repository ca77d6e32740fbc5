"""Lineage determination: do A and B sit in the same loss basin?

Steps: put the parameters in correspondence (:func:`onnx_lineage.matching.match`), sweep the
straight line between A's parameters and B's aligned ones, measure the barrier (the largest excess
of the loss over the straight line between the end losses), add the data-free weight evidence, and
decide with thresholds calibrated on independent pairs (see :data:`CALIBRATION`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from onnx_lineage.analyses import criteria
from onnx_lineage.analyses.evidence import weight_evidence
from onnx_lineage.analyses.interpolation import (Endpoint, InterpolatedModel, fast_path_supported,
                                                 rebuilt_model)
from onnx_lineage.data import Dataset, digits, feeds_for
from onnx_lineage.matching import MatchResult, match
from onnx_lineage.model.loading import LoadedModel, load_model
from onnx_lineage.model.runner import Runner
from onnx_lineage.results import Result

#: Thresholds of the verdict, calibrated once on independent pairs only (same architecture and
#: data, fresh seeds; never the evaluated pairs) by ``benchmarks/calibrate.py``:
#: ``similarity`` is halfway between the largest aligned unit similarity of an independent pair
#: (0.508, two PyTorch MLPs 64-128-64-10 on digits) and 1; ``barrier`` is half the smallest aligned
#: normalised barrier of an independent pair (0.0224, the same MLPs). Evidence and command:
#: benchmarks/RESULTS.md.
CALIBRATION = {"barrier": 0.0112, "similarity": 0.754}


@dataclass(frozen=True)
class DeterminationResult(Result):
    """Verdict and evidence of ``determine``.

    Attributes
    ----------
    verdict : str
        ``related``, ``unrelated`` or ``undetermined``.
    related : bool or None
    barrier : float or None
        Normalised loss barrier along the aligned path.
    threshold : float
    margin : float or None
        ``threshold - barrier`` (positive: under the threshold).
    p_value : float or None
        Weight similarity against the null of independently initialised weights.
    coverage : dict
    curve : list of dict
        ``alpha``, ``loss``, ``error`` along the path.
    """

    model_a: str
    model_b: str
    verdict: str
    related: bool | None
    reason: str
    barrier: float | None
    barrier_unaligned: float | None
    error_barrier: float | None
    threshold: float
    margin: float | None
    similarity: float | None
    similarity_threshold: float
    null_similarity: float | None
    p_value: float | None
    coverage: dict
    criterion: str
    interpolated_params: int
    curve: list
    transforms: list
    notes: list
    provider: str
    queries: int
    seconds: float
    match: dict = field(default_factory=dict)


def _loaded(m) -> LoadedModel:
    return m if isinstance(m, LoadedModel) else load_model(m)


def endpoints_for(m: MatchResult) -> tuple[list[Endpoint], list[str]]:
    """Interpolated tensors of A's graph with B's aligned values, and what could not be."""
    eps, notes = [], []
    for layer in m.a_layers:
        if layer.index not in m.b_aligned:
            continue
        for key, b_val in m.b_aligned[layer.index].items():
            site = layer.sites.get(key)
            if site is None:
                notes.append(f"layer {layer.index} {key}: no place in A's graph; kept A's")
                continue
            eps.append(Endpoint(site, layer.params[key], b_val))
    return eps, notes


class Sweep:
    """Evaluate the loss along the line between A and B's aligned parameters.

    Parameters
    ----------
    base : onnx.ModelProto
    endpoints : list of Endpoint
    data : Dataset
    targets : ndarray of shape (n,), int64, or None
        Labels to score against (None for models without classes).
    device : str
    """

    def __init__(self, base, endpoints, data: Dataset, targets, device: str = "auto",
                 output: str = "auto"):
        self.base, self.endpoints, self.targets = base, endpoints, targets
        self.device, self.output = device, output
        self.fast = fast_path_supported(endpoints)
        if self.fast:
            self.model = InterpolatedModel(base, endpoints)
            self.runner = Runner(self.model.proto, device=device, output=output, name="interpolated",
                                 static_inputs=frozenset(self.model.names))
        else:
            self.model = None
            self.runner = Runner(rebuilt_model(base, endpoints, 0.0), device=device, output=output,
                                 name="interpolated")
        self.feeds, self.ignored = feeds_for(self.runner.inputs, data, "model A")
        self.kind = self.runner.output_kind
        self.ends: dict[float, np.ndarray] = {}
        self._seen: dict[float, np.ndarray] = {}

    @property
    def provider(self) -> str:
        return self.runner.provider

    def forget(self) -> None:
        """Drop the computed points, so the next sweep runs every alpha again (for timing)."""
        self._seen.clear()

    def scores(self, alpha: float) -> np.ndarray:
        """Raw prediction output of the interpolated model at ``alpha``, shape (n, k).

        Each alpha runs once: the base model's own predictions (alpha 0), used as targets when
        the data has no labels, are the first point of the sweep, not an extra pass.
        """
        if alpha in self._seen:
            return self._seen[alpha]
        if self.fast:
            pred = self.runner.predict(self.feeds, static=self.model.weights(alpha))
        else:
            r = Runner(rebuilt_model(self.base, self.endpoints, alpha), device=self.device,
                       output=self.output, name="interpolated")
            pred = r.predict(self.feeds)
            self.runner.forward_rows += r.forward_rows
        out = pred.scores if pred.scores is not None else pred.labels[:, None].astype(np.float32)
        self._seen[alpha] = out
        return out

    def point(self, alpha: float) -> dict:
        """Loss and error at ``alpha``."""
        s = self.scores(alpha)
        if self.kind in ("logits", "probabilities"):
            labels = np.argmax(s, axis=1)
            return {"alpha": alpha, "loss": criteria.cross_entropy(s, self.kind, self.targets),
                    "error": criteria.error_rate(labels, self.targets)}
        if self.kind == "labels":
            err = criteria.error_rate(s[:, 0].astype(np.int64), self.targets)
            return {"alpha": alpha, "loss": err, "error": err}
        if alpha in (0.0, 1.0):
            self.ends[alpha] = s
        fa, fb = self.ends.get(0.0), self.ends.get(1.0)
        dev = 0.0 if fa is None or fb is None else criteria.functional_deviation(s, fa, fb, alpha)
        return {"alpha": alpha, "loss": dev, "error": None}


def alpha_grid(points: int) -> np.ndarray:
    """``points`` evenly spaced alphas in [0, 1]."""
    return np.linspace(0.0, 1.0, max(int(points), 3))


def run_sweep(sweep: Sweep, points: int = 11, refine: bool = True) -> list[dict]:
    """The curve on an even grid, refined around the largest excess over the straight line."""
    grid = list(alpha_grid(points))
    # the ends first: the functional criterion needs f_A and f_B
    curve = {a: sweep.point(a) for a in (grid[0], grid[-1])}
    for a in grid[1:-1]:
        curve[a] = sweep.point(a)
    if refine:
        alphas = sorted(curve)
        ex = criteria.excess_over_line(alphas, [curve[a]["loss"] for a in alphas])
        k = int(np.argmax(ex))
        for j in (k - 1, k + 1):
            if 0 <= j < len(alphas):
                for t in (0.5,):
                    a = alphas[k] + t * (alphas[j] - alphas[k])
                    curve[a] = sweep.point(a)
    return [curve[a] for a in sorted(curve)]


def barrier_of(curve: list[dict], key: str = "loss") -> float:
    """Largest excess of ``key`` over the straight line between its end values (>= 0)."""
    vals = [c[key] for c in curve]
    if any(v is None for v in vals):
        return float("nan")
    ex = criteria.excess_over_line([c["alpha"] for c in curve], vals)
    return float(max(ex.max(), 0.0))


def sample_rows(data: Dataset, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``n`` rows, drawn without replacement (stratified by ``y`` if present)."""
    if len(data) <= n:
        return np.arange(len(data))
    if data.y is None:
        return np.sort(rng.choice(len(data), n, replace=False))
    idx = []
    classes, counts = np.unique(data.y, return_counts=True)
    for c, cnt in zip(classes, counts):
        take = max(1, int(round(n * cnt / len(data))))
        rows = np.flatnonzero(data.y == c)
        idx.append(rng.choice(rows, min(take, rows.size), replace=False))
    return np.sort(np.concatenate(idx))


def determine(a, b, data: Dataset | None = None, *, seed: int = 0, device: str = "auto",
              points: int = 11, rows: int = 1000, output: str = "auto",
              match_result: MatchResult | None = None, surrogates: int = 12) -> DeterminationResult:
    """Is B derived from A? The loss-basin test with weight evidence.

    Parameters
    ----------
    a, b : path or LoadedModel
    data : Dataset, optional
        Default: the built-in digits.
    seed : int
        Seeds row sampling and the surrogate null.
    points : int
        Alphas on the even grid (>= 3); two more are added around the maximum.
    rows : int
        Rows of data used for the loss.
    match_result : MatchResult, optional
        A correspondence already computed for (a, b).
    surrogates : int
        Shuffled surrogates for the p-value of the weight evidence (0: no p-value; ``tree`` uses
        this, it needs the similarity only).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    a, b = _loaded(a), _loaded(b)
    data = digits() if data is None else data
    m = match_result or match(a, b)
    notes = list(m.limits)
    base_name = "A"
    eps, skipped = endpoints_for(m)
    if not _writable(eps) and m.pairs:
        # A stores its weights quantized (or folded): interpolate in B's graph instead
        m_rev = match(b, a)
        eps_rev, skipped_rev = endpoints_for(m_rev)
        if _writable(eps_rev):
            base_name, eps, skipped = "B", eps_rev, skipped_rev
            notes.append("A's weights cannot be overwritten (quantized or folded); the path is "
                         "evaluated in B's graph")
    notes += skipped
    ev = weight_evidence(m, m.chains, rng, n_null=surrogates) if m.pairs else None
    sim = None if ev is None or not math.isfinite(ev.statistic) else ev.statistic
    p_value = None if ev is None or not math.isfinite(ev.p_value) else ev.p_value
    common = dict(model_a=a.name, model_b=b.name, threshold=CALIBRATION["barrier"],
                  similarity_threshold=CALIBRATION["similarity"], similarity=sim,
                  null_similarity=None if ev is None else ev.null_mean, p_value=p_value,
                  coverage=m.coverage, transforms=m.transforms, match=m.to_dict())
    if not m.pairs or not eps or not _writable(eps):
        reason = ("no parametric layers in common: nothing to interpolate" if not m.pairs else
                  "neither model's graph can take interpolated weights (both quantized)")
        return DeterminationResult(verdict="undetermined", related=None, reason=reason,
                                   barrier=None, barrier_unaligned=None, error_barrier=None,
                                   margin=None, criterion="none", interpolated_params=0, curve=[],
                                   notes=notes, provider="-", queries=0,
                                   seconds=time.perf_counter() - t0, **common)

    base = (a if base_name == "A" else b).proto
    idx = sample_rows(data, rows, rng)
    sample = data.subset(idx)
    sweep = Sweep(base, eps, sample, None, device, output)
    if sweep.ignored:
        notes.append(f"data arrays not used by the model: {', '.join(sweep.ignored)}")
    base_scores = sweep.scores(0.0)  # the base model itself: the sweep's first point
    classes = sweep.kind in ("logits", "probabilities", "labels")
    if classes and sample.y is not None:
        targets, criterion = sample.y, "cross-entropy against the labels"
    elif classes:
        labels = (base_scores[:, 0].astype(np.int64) if sweep.kind == "labels"
                  else np.argmax(base_scores, axis=1))
        targets, criterion = labels, f"cross-entropy against {base_name}'s predictions"
    else:
        targets, criterion = None, "functional deviation from the straight line of outputs"
    if sweep.kind == "labels":
        criterion = "error rate (label-only model)"
    sweep.targets = targets
    curve = run_sweep(sweep, points)
    n_classes = base_scores.shape[1] if sweep.kind != "labels" else int(targets.max()) + 1
    scale = math.log(max(n_classes, 2)) if sweep.kind in ("logits", "probabilities") else 1.0
    raw = barrier_of(curve)
    barrier = raw / scale
    err_barrier = barrier_of(curve, "error") if sweep.kind in ("logits", "probabilities") else None
    unaligned = _unaligned_barrier(base, m, sample, targets, device, output, scale, base_name)
    queries = sweep.runner.forward_rows

    informative = True
    if sample.y is not None and sweep.kind in ("logits", "probabilities", "labels"):
        # the basin test needs models that fit the data: on data they cannot predict (the wrong
        # task, the wrong preprocessing) both ends have a chance-level loss and any path is flat
        chance = 1.0 - 1.0 / max(n_classes, 2)
        worst = max(curve[0]["error"], curve[-1]["error"])
        if worst > 0.5 * chance:
            informative = False
            notes.append(f"the models do not fit this data (error {curve[0]['error']:.2f} for "
                         f"{base_name} at one end, {curve[-1]['error']:.2f} at the other; chance "
                         f"{chance:.2f}): the barrier is not evidence, the weights decide")
    verdict, related, reason = decide(barrier if informative else None, sim)
    if m.coverage["a"] < 1.0 or m.coverage["b"] < 1.0:
        notes.append(f"partial reuse: {len(eps)} tensors interpolated (the matched layers); "
                     f"unmatched layers keep {base_name}'s values along the path")
    for c in curve:
        c["loss_normalised"] = c["loss"] / scale
    return DeterminationResult(verdict=verdict, related=related, reason=reason, barrier=barrier,
                               barrier_unaligned=unaligned, error_barrier=err_barrier,
                               margin=CALIBRATION["barrier"] - barrier, criterion=criterion,
                               interpolated_params=sum(e.a.size for e in eps), curve=curve,
                               notes=notes, provider=sweep.provider, queries=int(queries),
                               seconds=time.perf_counter() - t0, **common)


def _writable(eps: list[Endpoint]) -> bool:
    return bool(eps) and all(e.site.writable for e in eps)


def _unaligned_barrier(base, m, sample, targets, device, output, scale, base_name) -> float | None:
    """The same barrier without undoing permutations (only reported; alignment can lower it)."""
    if not any("permutation" in p["transforms"] or "scale" in p["transforms"] for p in m.pairs):
        return None
    raw = {layer.index: layer.params for layer in m.b_layers}
    b_of = {p["a"]: p["b"] for p in m.pairs}
    eps = []
    for layer in m.a_layers:
        if layer.index in b_of and base_name == "A":
            for key, val in m.b_aligned[layer.index].items():
                bval = raw[b_of[layer.index]].get(key)
                if key in layer.sites and bval is not None and bval.shape == val.shape:
                    eps.append(Endpoint(layer.sites[key], layer.params[key], bval))
    if not eps or not _writable(eps):
        return None
    curve = run_sweep(Sweep(base, eps, sample, targets, device, output), 11, refine=False)
    return barrier_of(curve) / scale


def decide(barrier: float | None, similarity: float | None) -> tuple[str, bool | None, str]:
    """Verdict from the normalised barrier and the weight similarity (see :data:`CALIBRATION`).

    Two tests, each calibrated so that no independent pair passes it: the loss-basin test (barrier
    at most its threshold) and the weight test (unit similarity at least its threshold). Either
    one is evidence of shared training: large learning rates can carry a child over a barrier
    while its weights stay recognisable, and can scramble weights while it stays in the basin.
    Neither passing means unrelated. Where no similarity can be computed, the barrier decides;
    where the barrier is not informative (``None``: models that do not fit the data), the
    similarity does.
    """
    tb, ts = CALIBRATION["barrier"], CALIBRATION["similarity"]
    if barrier is None:
        if similarity is None:
            return "undetermined", None, "neither the loss path nor the weights are informative"
        if similarity >= ts:
            return "related", True, f"shared weights (unit similarity {similarity:.2f} >= {ts})"
        return "unrelated", False, (f"the weights share no training (unit similarity "
                                    f"{similarity:.2f} < {ts}); the loss path is not informative")
    if not math.isfinite(barrier):
        return "undetermined", None, "the loss could not be evaluated along the path"
    basin = barrier <= tb
    shared = similarity is not None and similarity >= ts
    sim = "n/a" if similarity is None else f"{similarity:.2f}"
    if basin and shared:
        return "related", True, (f"same loss basin (barrier {barrier:.4f} <= {tb}) and shared "
                                 f"weights (unit similarity {sim} >= {ts})")
    if shared:
        return "related", True, (f"weights clearly shared (unit similarity {sim} >= {ts}) although "
                                 f"training carried it over a barrier of {barrier:.4f}")
    if basin:
        why = ("no weight similarity could be computed" if similarity is None else
               f"its weights moved far (unit similarity {sim} < {ts})")
        return "related", True, f"same loss basin (barrier {barrier:.4f} <= {tb}); {why}"
    if similarity is None:
        return "unrelated", False, f"a loss barrier of {barrier:.4f} > {tb} separates them"
    return "unrelated", False, (f"a loss barrier of {barrier:.4f} > {tb} separates them and their "
                                f"weights share no training (unit similarity {sim} < {ts})")
