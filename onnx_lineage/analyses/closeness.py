"""Lineage closeness: how far B's decision boundaries moved from A's, from labels alone.

For sampled points x and directions u shared by both models, each model's boundary along
``x + t u`` is found by a batched bracket-and-bisect search (:mod:`.boundary`). Per ray:

* match: both models give x the same label and flip to the same label;
* distance similarity: ``1 - |dA - dB| / (dA + dB)`` (a censored ray counts at ``tmax``);
* ray score: match x distance similarity.

A point's score is the mean of its rays' scores; closeness is the mean over points, with a 95%
interval over points. Points are added in rounds until the interval's half-width is below
``tolerance`` or the budget is spent.

Both models must predict over one label space: class scores of different widths (a transfer
child with a new head) are refused, or compared on the labels both have (``label_space="shared"``:
each model's argmax over its first k scores, k the smaller width, index i taken to mean the same
class in both); labels in the data that neither model can predict are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from onnx_lineage.analyses import directions as dirs
from onnx_lineage.analyses.context import Analysis, Run
from onnx_lineage.analyses.boundary import RaySearch, search
from onnx_lineage.analyses.labels import Labeler
from onnx_lineage.analyses.rays import ContinuousSpace, DiscreteSpace, ModelView
from onnx_lineage.analyses.sampling import margins, mean_ci95, priority_order
from onnx_lineage.data import Dataset, check_labels, feeds_for, sources
from onnx_lineage.errors import DataError, LabelSpaceError, LineageError
from onnx_lineage.model.footprint import closeness_footprint, match_footprint
from onnx_lineage.model.runner import Prediction, Runner
from onnx_lineage.results import Result


@dataclass(frozen=True)
class ClosenessResult(Result):
    """Closeness of B to A and its parts."""

    model_a: str
    model_b: str
    closeness: float
    ci95: list
    matching_rate: float
    distance_similarity: float
    mean_distance: dict
    points: int
    rays: int
    queries: dict
    rounds: int
    directions: list
    labels: str
    path: str
    matching_by_class: dict
    provider: dict
    seconds: float
    forward_seconds: dict
    notes: list
    classes: dict = field(default_factory=dict)
    _distances: dict = field(default_factory=dict, repr=False)

    @property
    def distances(self) -> dict:
        """Per-ray boundary distances of ``a`` and ``b`` (NaN where censored)."""
        return self._distances


class _Rays:
    """Per-ray outcomes (origin row, distance and flip label per model), gathered round by round."""

    def __init__(self):
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, **columns: np.ndarray) -> None:
        for k, v in columns.items():
            self.parts.setdefault(k, []).append(v)

    def __getitem__(self, key: str) -> np.ndarray:
        return np.concatenate(self.parts[key])


#: Output kinds whose scores are one per class.
CLASS_KINDS = ("logits", "probabilities")
#: How two label spaces of different sizes are handled: refused, or compared on the shared labels.
LABEL_SPACES = ("same", "shared")


def class_count(runner: Runner, data: Dataset) -> int | None:
    """How many classes a model scores: the declared width of its prediction output, else the
    width of its prediction on the first row of ``data`` (arranged); None for outputs that are
    not class scores (labels only, embeddings, regression)."""
    if runner.output_kind not in CLASS_KINDS:
        return None
    out = next(o for o in runner.session.get_outputs() if o.name == runner.output_name)
    shape = list(out.shape or ())
    if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
        return shape[1]
    feeds, _ = feeds_for(runner.inputs, data.subset(np.arange(1)), runner.name)
    return runner.predict(feeds).scores.shape[1]


def restricted(pred: Prediction, k: int) -> Prediction:
    """``pred`` over its first ``k`` classes: the scores cut to them, the labels their argmax."""
    scores = np.ascontiguousarray(pred.scores[:, :k])
    return Prediction(np.argmax(scores, axis=1).astype(np.int64), scores)


class _Model:
    """A model with its view of the data and a labeler; ``classes`` restricts its class scores
    to the first ``classes`` (the labels shared with the other model), None keeps them all."""

    def __init__(self, runner: Runner, view: ModelView, labeler: Labeler,
                 classes: int | None = None):
        self.runner, self.view, self.labeler, self.classes = runner, view, labeler, classes
        # class scores whose argmax is the label: searches can take them raw (one kernel a step)
        self.score_fn = (self.scores if labeler.derived is None
                         and runner.output_kind in ("logits", "probabilities") else None)

    def labels(self, moved, comp, origin_rows) -> np.ndarray:
        pred = self.runner.predict(self.view.feeds(moved, comp, origin_rows))
        return self.labeler(pred if self.classes is None else restricted(pred, self.classes))

    def scores(self, moved, comp, origin_rows) -> np.ndarray:
        """Raw class scores (k, C), float32, contiguous, at the first ``k = len(origin_rows)``
        rows of ``moved`` (rows after them may pad the forward pass)."""
        k = len(origin_rows)
        if not self.view.direct:
            moved = moved[:k]
        (out,) = self.runner.run(self.view.feeds(moved, comp, origin_rows), rows=k)
        scores = self.runner.score_rows(out)
        return scores if self.classes is None else np.ascontiguousarray(scores[:, :self.classes])


def closeness(a, b, data: Dataset | None = None, *, seed: int = 0, device: str = "auto",
              points: int = 256, budget: int | None = None, tolerance: float = 0.02,
              rays_per_point: int = 6, directions=("random", "manifold", "adversarial"),
              rtol: float = 1e-3, bounds: tuple[float, float] | None = None,
              output: str = "auto", round_size: int | None = None,
              sampling: str = "stratified", label_space: str = "same",
              a_predictions: Prediction | None = None, progress=None,
              max_memory: int | str | None = None) -> ClosenessResult:
    """How close B's decision boundaries are to A's (black-box, labels only).

    Parameters
    ----------
    a, b : path or LoadedModel
    data : Dataset, optional
        Default: the built-in digits.
    points : int
        Most points to measure.
    budget : int, optional
        Most queries (forward rows) per model; stops adding rounds once spent.
    tolerance : float
        Stop when the 95% interval's half-width is below this.
    rays_per_point : int
        Rays per point, shared out among ``directions``.
    rtol : float
        Relative bisection tolerance.
    bounds : (float, float), optional
        Valid input range; default: per-feature range of the data.
    progress : callable, optional
        Called with a description of each step as it starts.
    round_size : int, optional
        Points added per round (default: a quarter of ``points``, between 64 and 512); larger
        rounds give onnxruntime larger batches, smaller ones stop sooner once the interval is
        narrow.
    sampling : {"stratified", "uniform"}
        ``stratified``: classes in turn, near-boundary points favoured (:mod:`.sampling`);
        ``uniform``: points in plain random order (the baseline without the sampling strategy).
    label_space : {"same", "shared"}
        When A and B score different numbers of classes: ``same`` refuses (a LabelSpaceError),
        ``shared`` compares them on the labels both have (see the module docstring).
    a_predictions : Prediction, optional
        A's predictions on all of ``data`` (shared with determination by ``analyze``).
    max_memory : int or str, optional
        The run's memory budget (bytes, or e.g. ``"4G"``), for this call only (default: the one
        in force, :mod:`onnx_lineage.memory`).

    Raises
    ------
    LabelSpaceError
        A and B score different numbers of classes and ``label_space`` is ``same``.
    DataError
        The data's labels fall outside both models' classes.
    """
    how = Closeness(device=device, points=points, budget=budget, tolerance=tolerance,
                    rays_per_point=rays_per_point, directions=tuple(directions), rtol=rtol,
                    bounds=bounds, output=output, round_size=round_size, sampling=sampling,
                    label_space=label_space, a_predictions=a_predictions)
    return how(a, b, data, seed=seed, progress=progress, max_memory=max_memory)


@dataclass(frozen=True)
class Closeness(Analysis):
    """Closeness as an analysis (:class:`~onnx_lineage.analyses.context.Analysis`): its
    settings are :func:`closeness`'s, checked when it is made."""

    device: str = "auto"
    points: int = 256
    budget: int | None = None
    tolerance: float = 0.02
    rays_per_point: int = 6
    directions: tuple = ("random", "manifold", "adversarial")
    rtol: float = 1e-3
    bounds: tuple[float, float] | None = None
    output: str = "auto"
    round_size: int | None = None
    sampling: str = "stratified"
    label_space: str = "same"
    a_predictions: Prediction | None = field(default=None, repr=False)
    first: ClassVar[str] = "reading the models and predicting with A"
    command: ClassVar[str] = "closeness"

    def __post_init__(self):
        _check_settings(self.points, self.rays_per_point, self.tolerance, self.rtol,
                        self.directions, self.label_space, self.sampling)

    def footprint(self, run: Run) -> tuple:
        """A session of each model and a batch of each
        (:func:`~onnx_lineage.model.footprint.closeness_footprint`)."""
        a, b = run.a.proto, run.b.proto
        return (closeness_footprint(a, b, len(run.data)),
                (("`match` (the data-free tests)", match_footprint(a, b)),))

    def run(self, run: Run) -> ClosenessResult:
        """Rounds of boundary searches on a run that has begun (the module docstring)."""
        a, b, data, rng = run.a, run.b, run.data, run.rng
        ra = Runner(a.proto, device=self.device, output=self.output, name=a.name)
        rb = Runner(b.proto, device=self.device, output=self.output, name=b.name)
        key = sources(ra.inputs, data, a.name)[ra.inputs[0].name]
        moved = data.arrays[key]
        discrete = moved.dtype.kind in "iu"
        companions = tuple(k for k, v in data.arrays.items()
                           if discrete and k != key and v.shape == moved.shape)
        feeds_a, ignored = feeds_for(ra.inputs, data, a.name)
        ref = self.a_predictions if self.a_predictions is not None else ra.predict(feeds_a)
        notes = list(data.notes)
        ref, classes, shared = _label_spaces(ref, ra, rb, data, a.name, b.name,
                                             self.label_space, notes)
        labeler = Labeler(ra.output_kind, ref, rng)
        labels_all = labeler(ref)
        if ignored:
            notes.append(f"data arrays not used by A: {', '.join(ignored)}")
        if ra.batch_dependent or rb.batch_dependent:
            notes.append("batch-dependent model (dynamic quantization) run one row at a time")
        if labeler.derived:
            notes.append(f"labels derived for both models: {labeler.derived}")
        ma = _Model(ra, ModelView(ra, data, key, companions, a.name), labeler, shared)
        mb = _Model(rb, ModelView(rb, data, key, companions, b.name), labeler, shared)
        if not mb.view.moved:
            raise DataError(f"{b.name}: none of its inputs reads the array {key!r} that A's rays "
                            "move")
        walk = _input_space(moved, data, companions, discrete, self.bounds, self.directions)
        if self.sampling == "stratified":
            order = priority_order(labels_all, margins(ref.scores, ra.output_kind,
                                                       len(labels_all)), rng)
        else:
            order = rng.permutation(len(labels_all))
        search = _Search(ma, mb, walk, self.rays_per_point, self.rtol, rng, labels_all)
        round_size = (int(np.clip(self.points // 4, 64, 512)) if self.round_size is None
                      else self.round_size)
        rounds = _search_rounds(search, order[:self.points], round_size, self.tolerance,
                                self.budget, notes, run.step)
        return _result(search, a.name, b.name, rounds, labeler, ra, rb, classes, notes,
                       run.seconds())


def _check_settings(points, rays_per_point, tolerance, rtol, directions, label_space,
                    sampling) -> None:
    if points < 1 or rays_per_point < 1 or not 0 < tolerance < 1 or not 0 < rtol < 1:
        raise LineageError("points and rays per point must be >= 1; tolerance and rtol in (0, 1)")
    dirs.check_names(directions)
    if label_space not in LABEL_SPACES:
        raise ValueError(f"unknown label_space {label_space!r}: choose from "
                         f"{', '.join(LABEL_SPACES)}")
    if sampling not in ("stratified", "uniform"):
        raise ValueError(f"unknown sampling {sampling!r}: choose from stratified, uniform")


def _label_spaces(ref, ra, rb, data, name_a: str, name_b: str, label_space: str,
                  notes: list) -> tuple:
    """A's predictions restricted to the labels both models score (``label_space="shared"``)
    where their label spaces differ; the class counts (``a``, ``b``, ``compared``) and the
    shared count (None when they do not differ)."""
    classes = {"a": ref.scores.shape[1] if ra.output_kind in CLASS_KINDS else None,
               "b": class_count(rb, data)}
    known = [(k, n) for k, n in ((classes["a"], name_a), (classes["b"], name_b)) if k is not None]
    if known:  # labels that neither model can predict
        check_labels(data, *max(known))
    shared = None
    if None not in classes.values() and classes["a"] != classes["b"]:
        shared = min(classes.values())
        differ = (f"{name_a} scores {classes['a']} classes and {name_b} {classes['b']}: their "
                  "label spaces differ")
        if label_space != "shared":
            raise LabelSpaceError(f"{differ}, so their decision boundaries cannot be compared; "
                                  f"--shared-labels compares them on the {shared} labels both "
                                  f"have (0-{shared - 1})")
        ref = restricted(ref, shared)
        notes.append(f"{differ}; closeness is computed on the {shared} labels both have "
                     f"(0-{shared - 1}), each model's prediction the best of those, label i "
                     "taken to mean the same class in both")
    classes["compared"] = shared or classes["a"]
    return ref, classes, shared


@dataclass(frozen=True)
class _Walk:
    """How rays move through the input space: the space, the direction kinds, the bisection's
    first step, farthest step and absolute tolerance, and a sentence for the report."""

    space: object
    kinds: list
    t0: float
    tmax: float
    atol: float
    path: str


def _input_space(moved: np.ndarray, data, companions: tuple, discrete: bool, bounds,
                 directions) -> _Walk:
    """Token sequences move position by position towards another sample; continuous inputs
    along straight rays clipped to the valid range (``bounds``, else the data's per-feature
    range)."""
    if discrete:
        space = DiscreteSpace(moved, {k: data.arrays[k] for k in companions})
        step = 1.0 / moved.shape[1]
        return _Walk(space, ["path"], step, 1.0, step,
                     "discrete: positions replaced towards another sample, in random order")
    flat = moved.reshape(len(moved), -1).astype(np.float32)
    lo = flat.min(axis=0) if bounds is None else np.full(flat.shape[1], bounds[0], np.float32)
    hi = flat.max(axis=0) if bounds is None else np.full(flat.shape[1], bounds[1], np.float32)
    if bounds is not None and (np.any(flat < bounds[0]) or np.any(flat > bounds[1])):
        raise DataError(f"--bounds {bounds[0]},{bounds[1]} exclude some of the data")
    space = ContinuousSpace(flat, lo, hi, moved.shape[1:])
    return _Walk(space, list(directions), space.scale / 64.0, 2.0 * space.scale, 0.0,
                 "continuous: straight rays clipped to the valid input range")


@dataclass
class _Search:
    """The boundary search in progress: both models, how rays move, A's labels of every point
    and B's at the points measured so far (-1 elsewhere), the rays and the points' scores."""

    ma: _Model
    mb: _Model
    walk: _Walk
    rays_per_point: int
    rtol: float
    rng: np.random.Generator
    base_a: np.ndarray
    base_b: np.ndarray = None
    rays: _Rays = field(default_factory=_Rays)
    scores: list = field(default_factory=list)

    def __post_init__(self):
        if self.base_b is None:
            self.base_b = np.full(self.base_a.size, -1, np.int64)

    def round(self, rows: np.ndarray) -> None:
        """Measure the points ``rows``: B's labels there, then their rays."""
        self.base_b[rows] = self.mb.labels(*_origin_inputs(self.walk.space, rows), rows)
        self.scores.extend(_round(self, rows))


def _search_rounds(search: _Search, order: np.ndarray, round_size: int, tolerance: float,
                   budget: int | None, notes: list, step) -> int:
    """Rounds of points in ``order`` until the 95% interval is narrow enough (after 32 points),
    the query budget is spent, or the points run out; the number of rounds."""
    rounds, taken = 0, 0
    queries_start_a = search.ma.runner.forward_rows
    while taken < order.size:
        rows = order[taken: taken + round_size]
        taken += rows.size
        rounds += 1
        step(f"boundary search: round {rounds}, points {taken - rows.size + 1}-{taken} of "
             f"at most {order.size}")
        search.round(rows)
        _, ci_lo, ci_hi = mean_ci95(np.asarray(search.scores))
        spent = max(search.ma.runner.forward_rows - queries_start_a,
                    search.mb.runner.forward_rows)
        if (ci_hi - ci_lo) / 2 <= tolerance and len(search.scores) >= 32:
            break
        if budget is not None and spent >= budget:
            notes.append(f"query budget {budget} reached")
            break
    return rounds


def _result(search: _Search, name_a: str, name_b: str, rounds: int, labeler, ra, rb,
            classes: dict, notes: list, seconds: float) -> ClosenessResult:
    ps = np.asarray(search.scores)
    value, ci_lo, ci_hi = mean_ci95(ps)
    rays, base_a, base_b, tmax = search.rays, search.base_a, search.base_b, search.walk.tmax
    da, db, fa, fb = rays["dist_a"], rays["dist_b"], rays["flip_a"], rays["flip_b"]
    origin = rays["origin"]
    match = (base_a[origin] == base_b[origin]) & (fa == fb)
    both = np.isfinite(da) & np.isfinite(db)
    sim = _distance_similarity(da, db, tmax)
    by_class = {str(int(c)): float(match[base_a[origin] == c].mean())
                for c in np.unique(base_a[origin])}
    return ClosenessResult(
        model_a=name_a, model_b=name_b, closeness=value, ci95=[ci_lo, ci_hi],
        matching_rate=float(match.mean()),
        distance_similarity=float(sim[both].mean()) if both.any() else 0.0,
        mean_distance={"a": _mean_min(origin, da), "b": _mean_min(origin, db)},
        points=len(ps), rays=int(origin.size),
        queries={"a": int(ra.forward_rows), "b": int(rb.forward_rows)}, rounds=rounds,
        directions=search.walk.kinds, labels=labeler.derived or f"A's and B's own {ra.output_kind}",
        path=search.walk.path, matching_by_class=by_class,
        provider={"a": ra.provider, "b": rb.provider}, seconds=seconds,
        forward_seconds={"a": ra.forward_seconds, "b": rb.forward_seconds}, notes=notes,
        classes=classes,
        _distances={"a": np.where(np.isfinite(da), da, np.nan),
                    "b": np.where(np.isfinite(db), db, np.nan)})


def _origin_inputs(space, rows):
    """The unmoved rows as (moved, companions) arrays, for labelling the ray origins."""
    if isinstance(space, DiscreteSpace):
        return space.x[rows], {k: v[rows] for k, v in space.companions.items()}
    return space.x[rows].reshape((rows.size,) + space.shape), {}


def _distance_similarity(da, db, tmax):
    a = np.where(np.isfinite(da), da, tmax)
    b = np.where(np.isfinite(db), db, tmax)
    return 1.0 - np.abs(a - b) / np.maximum(a + b, 1e-30)


def _mean_min(origin, d) -> float | None:
    """Mean over points of the shortest finite ray distance (points with none left out)."""
    ok = np.isfinite(d)
    if not ok.any():
        return None
    points, inverse = np.unique(origin[ok], return_inverse=True)
    best = np.full(points.size, np.inf)
    np.minimum.at(best, inverse, d[ok])
    return float(best.mean())


def _allot(kinds: list[str], n: int) -> list[str]:
    """``n`` ray kinds shared out in turn (random, manifold, adversarial, random, ...)."""
    return [kinds[k % len(kinds)] for k in range(n)]


def _round(s: _Search, rows: np.ndarray) -> list[float]:
    """Measure the rays of one round of points ``rows``; returns one score per point."""
    ma, space, base_a_all, base_b_all, rng = s.ma, s.walk.space, s.base_a, s.base_b, s.rng
    plan = _allot(s.walk.kinds, s.rays_per_point)
    first = [k for k in plan if k != "adversarial"] or ["random"]
    n_adv = plan.count("adversarial")
    origin = np.repeat(rows, len(first))
    ray_kind = np.tile(first, rows.size)
    u = _directions(space, origin, ray_kind, base_a_all, rng)
    res_a, res_b = _both(s, u, origin)
    d_a = res_a.distance.reshape(rows.size, len(first))

    if n_adv and not space.discrete:
        # the closest boundary point of A per point, and the boundary normal estimated there
        j = np.argmin(d_a, axis=1)
        ok = np.isfinite(d_a[np.arange(rows.size), j])
        idx = np.arange(rows.size)[ok] * len(first) + j[ok]
        if idx.size:
            pts, _ = space.points(u, origin, idx, res_a.distance.copy())
            flat_pts = pts.reshape(idx.size, -1)
            radius = 0.05 * res_a.distance[idx]
            normals = dirs.normal_estimate(
                flat_pts, base_a_all[origin[idx]], radius,
                lambda p, o=origin[idx]: ma.labels(p.reshape((p.shape[0],) + space.shape), {},
                                                   np.repeat(o, p.shape[0] // o.size)),
                rng)
            adv_origin = np.repeat(origin[idx], n_adv)
            adv_u = np.repeat(normals, n_adv, axis=0)
            ra2, rb2 = _both(s, adv_u, adv_origin)
            origin = np.concatenate([origin, adv_origin])
            u = np.concatenate([u, adv_u])
            ray_kind = np.concatenate([ray_kind, np.repeat("adversarial", adv_origin.size)])
            res_a = _concat(res_a, ra2)
            res_b = _concat(res_b, rb2)

    s.rays.add(origin=origin, dist_a=res_a.distance, dist_b=res_b.distance, flip_a=res_a.flip,
               flip_b=res_b.flip)

    same_base = base_a_all[origin] == base_b_all[origin]
    score = (same_base & (res_a.flip == res_b.flip)) * _distance_similarity(
        res_a.distance, res_b.distance, s.walk.tmax)
    # mean score per point, in the order of ``rows`` (every row has at least one ray)
    slot = np.empty(base_a_all.size, np.int64)
    slot[rows] = np.arange(rows.size)
    total = np.bincount(slot[origin], weights=score, minlength=rows.size)
    return (total / np.bincount(slot[origin], minlength=rows.size)).tolist()


def _concat(x: RaySearch, y: RaySearch) -> RaySearch:
    """Two searches' rays as one."""
    return RaySearch(np.concatenate([x.distance, y.distance]), np.concatenate([x.flip, y.flip]),
                     np.concatenate([x.found, y.found]), x.queries + y.queries, x.steps + y.steps)


def _directions(space, origin, ray_kind, labels, rng) -> np.ndarray:
    if space.discrete:
        partner = dirs.manifold_targets(origin, labels, rng)
        rank = np.argsort(rng.random((origin.size, space.length)), axis=1).argsort(axis=1)
        space.set_paths(partner, rank)
        return np.zeros((origin.size, 1), np.float32)
    d = space.x.shape[1]
    u = np.empty((origin.size, d), np.float32)
    rnd = ray_kind == "random"
    if rnd.any():
        u[rnd] = dirs.random_directions(origin[rnd], d, rng)
    man = ray_kind == "manifold"
    if man.any():
        u[man] = dirs.manifold_directions(space.x, origin[man], labels, rng)
    return u


def _both(s: _Search, u: np.ndarray, origin: np.ndarray) -> tuple[RaySearch, RaySearch]:
    """The rays ``u`` from the points ``origin`` searched in A and in B."""
    w = s.walk
    kw = {"t0": w.t0, "tmax": w.tmax, "rtol": s.rtol, "atol": w.atol}
    return tuple(search(m.labels, w.space, u, origin, base[origin], score_fn=m.score_fn,
                        capacity=m.runner.padded_rows(origin.size), name=m.runner.name, **kw)
                 for m, base in ((s.ma, s.base_a), (s.mb, s.base_b)))
