"""The loss along the straight line between A's parameters and B's: the interpolation sweep.

``theta(t) = (1 - t) theta_A + t theta_B`` (``t`` the position on the path; the curve's points
carry it as ``alpha``, their JSON key) over the matched layers, evaluated in one
model's graph (:func:`plan_path` chooses it), on a sample of the data. The paper's barrier is the
largest excess of the loss over the straight line between the end losses (:func:`barrier_of`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx

from onnx_lineage.analyses import criteria
from onnx_lineage.analyses.interpolation import (Endpoint, InterpolatedModel, fast_path_supported,
                                                 rebuilt_model)
from onnx_lineage.data import Dataset, feeds_for
from onnx_lineage.matching import MatchResult, match
from onnx_lineage.matching.batchnorm import folded_graph
from onnx_lineage.model.loading import LoadedModel
from onnx_lineage.model.runner import Runner
from onnx_lineage.model.stages import StagedRunner, stage_bytes

#: A sweep that can write less than this share of the matched parameters is not evidence.
MIN_INTERPOLATED = 0.5


def endpoints_for(m: MatchResult, values: dict | None = None, sites: dict | None = None
                  ) -> tuple[list[Endpoint], list[tuple[int, str]], list[str]]:
    """Interpolated tensors of A's graph, with B's values for them.

    Parameters
    ----------
    m : MatchResult
    values : dict of A's layer index to dict of str to ndarray, optional
        B's parameters in A's layout (default: the correspondence's ``b_aligned``; its
        ``b_own`` for B's own order).
    sites : dict of A's layer index to dict of str to Site, optional
        Sites that replace the layers' own (:func:`.batchnorm.folded_graph`).

    Returns
    -------
    endpoints : list of Endpoint
    keys : list of (int, str)
        The layer index and parameter name of each endpoint.
    skipped : list of str
        Parameters that have no place in A's graph.
    """
    values = m.correspondence.b_aligned if values is None else values
    sites = sites or {}
    eps, keys, notes = [], [], []
    for layer in m.correspondence.a_layers:
        if layer.index not in values:
            continue
        for key, b_val in values[layer.index].items():
            site = sites.get(layer.index, layer.sites).get(key)
            if site is None:
                notes.append(f"layer {layer.index} {key}: no place in A's graph; kept A's")
                continue
            if key in layer.params and layer.params[key].shape != b_val.shape:
                notes.append(f"layer {layer.index} {key}: A has fewer units than B (width-"
                             "pruned); its graph cannot take B's, kept A's")
                continue
            eps.append(Endpoint(site, m.correspondence.a_params[layer.index][key], b_val))
            keys.append((layer.index, key))
    return eps, keys, notes


def writable(eps: list[Endpoint]) -> bool:
    """Whether every endpoint can be overwritten with float weights."""
    return bool(eps) and all(e.site.writable for e in eps)


@dataclass(frozen=True)
class PathPlan:
    """Which graph takes the blended weights, and what moves along the path.

    Attributes
    ----------
    base : onnx.ModelProto
        The graph the sweep runs (A's, A's with its BatchNorm folded, or B's).
    base_name : str
        ``"A"`` or ``"B"`` (interpolating in B's graph when A's weights cannot be written).
    match : MatchResult
        The correspondence in the base's layout (``match(b, a)`` when ``base_name`` is B).
    endpoints : list of Endpoint
    keys : list of (int, str)
    fraction : float
        Share of the matched parameters (of the base model) that the endpoints move.
    notes : list of str
    """

    base: onnx.ModelProto
    base_name: str
    match: MatchResult
    endpoints: list
    keys: list
    fraction: float
    notes: list


def _moved_fraction(m: MatchResult, eps: list[Endpoint]) -> float:
    total = sum(v.size for p in m.correspondence.a_params.values() for v in p.values())
    return float(sum(e.a.size for e in eps) / total) if total else 0.0


def plan_path(a: LoadedModel, b: LoadedModel, m: MatchResult) -> PathPlan | None:
    """Choose the graph to interpolate in: A's, with its BatchNorm folded in the graph when B has
    it folded (else A's convolutions could not take B's values), or B's when A's weights are
    quantized. None when nothing is matched."""
    if not m.pairs:
        return None
    notes: list[str] = []
    base, sites = a.proto, None
    if m.correspondence.folded == "a":
        base, sites = folded_graph(a.proto, m.correspondence.a_layers)
        if sites:
            notes.append(f"A's BatchNorm folded into {len(sites)} layer(s) of a rebuilt copy of "
                         "its graph, so that they can take B's folded weights")
    eps, keys, skipped = endpoints_for(m, sites=sites)
    plan = PathPlan(base, "A", m, eps, keys, _moved_fraction(m, eps), notes=notes + skipped)
    if not writable(eps):
        m_rev = match(b, a)
        eps_rev, keys_rev, skipped_rev = endpoints_for(m_rev)
        if writable(eps_rev):
            why = ("A's weights cannot be overwritten (quantized or folded); the path is "
                   "evaluated in B's graph")
            plan = PathPlan(b.proto, "B", m_rev, eps_rev, keys_rev, _moved_fraction(m_rev, eps_rev),
                            notes=notes + [why] + skipped_rev)
    return plan


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
        self.base, self.endpoints, self.targets = base, list(endpoints), targets
        self.device, self.output = device, output
        self.fast = fast_path_supported(endpoints)
        if self.fast:
            # past a share of the memory budget, the blend buffer holds a stage's weights
            most = stage_bytes(4.0 * sum(e.a.size for e in self.endpoints))
            self.model = InterpolatedModel(base, endpoints, most)
            kwargs = dict(device=device, output=output, name="interpolated",
                          static_inputs=frozenset(self.model.names))
            self.runner = (Runner(self.model.proto, **kwargs) if most is None else
                           StagedRunner(self.model.proto, most, self.model.sizes, keep=True,
                                        **kwargs))
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
        """Drop the computed points, so the next sweep runs every position again."""
        self._seen.clear()

    def subset(self, idx: np.ndarray) -> "Sweep":
        """The same session and weights on rows ``idx`` of the data (a new cache)."""
        part = copy.copy(self)
        part.feeds = self.runner.take(self.feeds, idx)
        part.targets = None if self.targets is None else self.targets[idx]
        part.ends, part._seen = {}, {}
        return part

    def endpoint_b(self, k: int) -> np.ndarray:
        """Endpoint ``k``'s current B value (canonical orientation)."""
        if self.fast:
            return self.model.b_value(k)
        return self.endpoints[k].b

    def set_b(self, k: int, value: np.ndarray) -> None:
        """Give endpoint ``k`` a new B value (canonical orientation); every point but t = 0
        (A alone) is computed again."""
        if self.fast:
            self.model.set_b(k, value)
        else:
            e = self.endpoints[k]
            self.endpoints[k] = Endpoint(e.site, e.a, value)
        a_alone = self._seen.get(0.0)
        self._seen.clear()
        if a_alone is not None:
            self._seen[0.0] = a_alone

    def scores(self, t: float) -> np.ndarray:
        """Raw prediction output of the interpolated model at ``t``, shape (n, k).

        Each position runs once: the base model's own predictions (t = 0), used as targets when
        the data has no labels, are the first point of the sweep, not an extra pass.
        """
        if t not in self._seen:
            self._seen[t] = self._run(t)
        return self._seen[t]

    def point(self, t: float) -> dict:
        """Loss and error at ``t``."""
        return self._point(t, self.scores(t))

    def point_with(self, t: float, values) -> dict:
        """Loss and error at ``t`` with some endpoints' B replaced by ``values`` (endpoint index
        to a function that makes its canonical B value), for this point only: the
        endpoints keep their B and the computed points stay (:meth:`InterpolatedModel
        .weights_with`: a replaced B is blended an endpoint at a time, never held whole)."""
        return self._point(t, self._run(t, values))

    def _run(self, t: float, values=None) -> np.ndarray:
        """Raw prediction output at ``t`` (B replaced by ``values`` where given), shape
        (n, k)."""
        if self.fast:
            pred = self.runner.predict(self.feeds, static=self.model.weights(t)
                                       if values is None else self.model.weights_with(t, values))
        else:
            eps = list(self.endpoints)
            for k, value in (values or {}).items():
                eps[k] = Endpoint(eps[k].site, eps[k].a, value())
            r = Runner(rebuilt_model(self.base, eps, t), device=self.device,
                       output=self.output, name="interpolated")
            pred = r.predict(self.feeds)
            self.runner.forward_rows += r.forward_rows
        return pred.scores if pred.scores is not None else pred.labels[:, None].astype(np.float32)

    def _point(self, t: float, s: np.ndarray) -> dict:
        if self.kind in ("logits", "probabilities"):
            labels = np.argmax(s, axis=1)
            return {"alpha": t, "loss": criteria.cross_entropy(s, self.kind, self.targets),
                    "error": criteria.error_rate(labels, self.targets)}
        if self.kind == "labels":
            err = criteria.error_rate(s[:, 0].astype(np.int64), self.targets)
            return {"alpha": t, "loss": err, "error": err}
        if t in (0.0, 1.0) and t not in self.ends:
            self.ends[t] = s
        fa, fb = self.ends.get(0.0), self.ends.get(1.0)
        dev = 0.0 if fa is None or fb is None else criteria.functional_deviation(s, fa, fb, t)
        return {"alpha": t, "loss": dev, "error": None}


def path_grid(points: int) -> np.ndarray:
    """``points`` evenly spaced positions on the path, in [0, 1]."""
    return np.linspace(0.0, 1.0, max(int(points), 3))


def run_sweep(sweep: Sweep, points: int = 11, refine: bool = True,
              progress=None) -> list[dict]:
    """The curve on an even grid, refined around the largest excess over the straight line.

    ``progress``, when given, is called with what the sweep is doing before each point."""
    step = progress or (lambda what: None)
    grid = list(path_grid(points))
    curve: dict = {}
    # the ends first: the functional criterion needs f_A and f_B
    for n, a in enumerate((grid[0], grid[-1], *grid[1:-1]), 1):
        step(f"point {n} of {len(grid)} (t {a:.2f})")
        curve[a] = sweep.point(a)
    if refine:
        ts = sorted(curve)
        ex = criteria.excess_over_line(ts, [curve[a]["loss"] for a in ts])
        k = int(np.argmax(ex))
        step(f"two more points around t {ts[k]:.2f}, the largest excess")
        for j in (k - 1, k + 1):
            if 0 <= j < len(ts):
                a = ts[k] + 0.5 * (ts[j] - ts[k])
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
