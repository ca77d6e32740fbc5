"""Lineage determination: is B derived from A? The tests of :mod:`onnx_lineage.evidence`, in order.

1. Correspondence (:func:`onnx_lineage.matching.match`), the symmetry classes found in both models
   and their class-by-class matching.
2. The data-free tests: unit order (exact) and aligned weights (calibrated).
3. The loss along the straight line from A to B aligned (the paper's sweep): reported, with the
   barrier before and after alignment. Alignment connects independent models too, so an aligned
   barrier near zero is never evidence on its own.
4. The basin test (exact): the loss midway between A and B in its own unit order against
   permuted copies of B. It runs when the data-free tests have not already rejected independence
   (its outcome could then change nothing), or always with ``all_tests``.
5. The verdict (:func:`onnx_lineage.evidence.decide`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from onnx_lineage.analyses import lowrank
from onnx_lineage.analyses.attribution import attribute
from onnx_lineage.analyses.context import Analysis, Run
from onnx_lineage.analyses.sweep import (MIN_INTERPOLATED, Sweep, barrier_of, plan_path, run_sweep,
                                         sample_rows)
from onnx_lineage.data import Dataset, check_labels
from onnx_lineage.errors import LineageError
from onnx_lineage.evidence import data_free, decide, share, symmetry_classes
from onnx_lineage.evidence.basin import NAME as BASIN, NULL as BASIN_NULL, Probe, copies_for
from onnx_lineage.evidence.function import NAME as FUNCTION, Values, gated_classes
from onnx_lineage.evidence.verdict import rejects
from onnx_lineage.evidence.registry import Evidence, registered
from onnx_lineage.evidence.result import TestResult
from onnx_lineage.matching import MatchResult, match
from onnx_lineage.model.activations import unit_values
from onnx_lineage.model.footprint import determine_footprint, match_footprint
from onnx_lineage.model.weights import release_pages
from onnx_lineage.results import Result

#: Rows of the data the basin test's copies are scored on (a subset of the sweep's).
BASIN_ROWS = 256
#: The rows the loss is measured on (the sweep's, the basin test's) are drawn with this seed, not
#: the run's: they are part of the basin test's statistic, and a p-value that moved with the rows
#: would move the verdict with ``--seed`` (on an independent pair the share of copies as low as
#: B can move tenfold between row samples). The run's seed draws the copies and breaks ties.
ROWS_SEED = 0


@dataclass(frozen=True)
class DeterminationResult(Result):
    """Verdict and evidence of ``determine``.

    Attributes
    ----------
    verdict : str
        ``related``, ``unrelated`` or ``undetermined``.
    related : bool or None
    reason : str
    alpha : float
        The level of the verdict (``threshold`` repeats it).
    p_value : float
        The tests combined by weighted Bonferroni: valid under any dependence between them.
    tests : list of TestResult
        Every test (:class:`onnx_lineage.evidence.TestResult`): ``name``, ``statistic``,
        ``p_value``, ``null``, ``classes`` (typed rows, :mod:`onnx_lineage.evidence.rows`),
        ``power``, ...
    shared_layers : list of int
        A's layers of the classes where lineage shows (empty unless related).
    barrier : float or None
        Normalised loss barrier along the aligned path (descriptive, never decisive).
    interpolated_fraction : float
        Share of the matched parameters that the sweep moved.
    curve : list of dict
        ``alpha``, ``loss``, ``error`` along the path.
    timings : dict
        Seconds per step: ``match``, ``tests`` (the data-free ones), ``sweep`` (the paper's
        sweep along A -> B aligned, with its session), ``sweep_unaligned`` (the same before
        alignment, when alignment moved B), ``basin`` and ``difference`` (whether B - A is
        low-rank, for a related pair).
    difference : dict or None
        For a related pair, whether B - A is low-rank layer by layer (a merged adapter, its
        rank): :meth:`onnx_lineage.analyses.lowrank.Difference.to_dict`. None otherwise.
    between : dict or None
        With ``also``: whether B sits between A and those models, the attribution of B to all
        of them (:func:`onnx_lineage.analyses.attribution.attribute`, its JSON). None otherwise.
    """

    model_a: str
    model_b: str
    verdict: str
    related: bool | None
    reason: str
    alpha: float
    threshold: float
    p_value: float
    tests: list
    shared_layers: list
    barrier: float | None
    barrier_unaligned: float | None
    error_barrier: float | None
    similarity: float | None
    coverage: dict
    criterion: str
    interpolated_params: int
    interpolated_fraction: float
    curve: list
    transforms: list
    notes: list
    provider: str
    queries: int
    seconds: float
    timings: dict = field(default_factory=dict)
    match: dict = field(default_factory=dict)
    difference: dict | None = None
    between: dict | None = None

    def test(self, name: str) -> TestResult | None:
        """The test called ``name`` (``unit_order``, ``aligned``, ``same_values``, ``basin``), or
        None."""
        return next((t for t in self.tests if t.name == name), None)


#: Layer kinds that make a model convex in its weights when it has one layer and nothing else:
#: softmax (logistic) regression, a linear classifier.
CONVEX_KINDS = ("dense", "linear")


def no_units(m: MatchResult) -> str:
    """Why ``m``'s models have no hidden units to compare, in their own terms: a model without
    weights, no layer in common (different architectures), single linear layers (a convex
    model: the only case where saying so is true), or shared layers without a hidden unit axis
    that can be permuted as a whole."""
    names = (m.model_a, m.model_b)
    la, lb = m.correspondence.a_layers, m.correspondence.b_layers
    empty = [n for n, layers in zip(names, (la, lb)) if not layers]
    if empty:
        who = f"{empty[0]} has no" if len(empty) == 1 else "neither model has"
        return (f"{who} weights that onnx-lineage reads (no dense, convolution, embedding, "
                "normalisation or recurrent layer: a tree ensemble, say, or fixed operations), "
                "so there are no units to compare")
    if not m.pairs:
        return (f"no layer of {m.model_a} ({_kinds(la)}) has a counterpart of the same "
                f"kind and shape in {m.model_b} ({_kinds(lb)}): different architectures")
    if all(len(layers) == 1 and layers[0].kind in CONVEX_KINDS
           for layers in (la, lb)):
        return ("both are a single linear layer without hidden units, a convex model (such as a "
                "logistic regression): it has one optimum, so derived and independent training "
                "land on the same weights")
    limits = f" ({'; '.join(m.limits)})" if m.limits else ""
    return (f"the {len(m.pairs)} layer(s) both models share have no hidden unit axis that can be "
            f"permuted as a whole{limits}")


def _kinds(layers) -> str:
    """``"2 dense, 1 conv"``: a model's layers counted by kind, in order of first appearance."""
    count: dict[str, int] = {}
    for layer in layers:
        count[layer.kind] = count.get(layer.kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in count.items())


@dataclass(frozen=True)
class _How:
    """How determine measures the path: where it runs, its points and rows, the basin test's most
    copies (0: not run) and level, and the progress callback."""

    device: str
    output: str
    points: int
    rows: int
    copies: int
    level: float
    step: Callable[[str], None]


@dataclass
class _Path:
    """What the sweep found (empty when no sweep ran), with its notes in order."""

    curve: list = field(default_factory=list)
    barrier: float | None = None
    unaligned: float | None = None
    error_barrier: float | None = None
    criterion: str = "none"
    provider: str = "-"
    queries: int = 0
    moved: int = 0
    fraction: float = 0.0
    basin: TestResult | None = None
    sweep_seconds: float = 0.0
    unaligned_seconds: float = 0.0
    basin_seconds: float = 0.0
    notes: list = field(default_factory=list)


def determine(a, b, data: Dataset | None = None, *, seed: int = 0, device: str = "auto",
              points: int = 11, rows: int = 1000, output: str = "auto",
              match_result: MatchResult | None = None, alpha: float = 0.01,
              copies: int | None = None, all_tests: bool = False,
              progress=None, rng: np.random.Generator | None = None,
              max_memory: int | str | None = None, also=()) -> DeterminationResult:
    """Is B derived from A? Independence tests with stated nulls, and the loss path.

    Parameters
    ----------
    a, b : path or LoadedModel
    data : Dataset, optional
        Default: the built-in digits.
    seed : int
        Seeds tie-breaking and the basin test's copies (the rows are drawn with
        :data:`ROWS_SEED`, the same for every seed).
    points : int
        Positions on the even grid of the sweep (>= 3); two more are added around the maximum.
    rows : int
        Rows of data used for the loss.
    match_result : MatchResult, optional
        A correspondence already computed for (a, b).
    rng : numpy Generator, optional
        Continue this generator instead of seeding one with ``seed``: the one ``match_result``
        was made with (``match(a, b, rng=rng)``), so that the numbers are those of a
        ``determine`` that matched the models itself.
    alpha : float
        Level of the verdict: ``related`` only when the combined p-value is at most ``alpha``.
    copies : int, optional
        Most permuted copies for the basin test (default: 30 over its share of ``alpha``,
        :func:`~onnx_lineage.evidence.basin.copies_for`; it stops earlier once its sequential
        boundaries decide); 0 skips the basin test and the sweep.
    all_tests : bool
        Run the basin test even when the data-free tests already decided (benchmarks).
    progress : callable, optional
        Called with a description of each step as it starts.
    max_memory : int or str, optional
        The run's memory budget (bytes, or e.g. ``"4G"``), for this call only (default: the one
        in force, :mod:`onnx_lineage.memory`).
    also : sequence of path or LoadedModel
        Other candidate parents: whether B sits between A and them (``between``).
    """
    how = Determination(device=device, points=points, rows=rows, output=output,
                        match_result=match_result, alpha=alpha, copies=copies,
                        all_tests=all_tests, also=tuple(also))
    return how(a, b, data, seed=seed, rng=rng, progress=progress, max_memory=max_memory)


@dataclass(frozen=True)
class Determination(Analysis):
    """The determination as an analysis (:class:`~onnx_lineage.analyses.context.Analysis`): its
    settings are :func:`determine`'s."""

    device: str = "auto"
    points: int = 11
    rows: int = 1000
    output: str = "auto"
    match_result: MatchResult | None = None
    alpha: float = 0.01
    copies: int | None = None
    all_tests: bool = False
    also: tuple = ()
    first: ClassVar[str] = "reading the models"
    command: ClassVar[str] = "determine"

    def footprint(self, run: Run) -> tuple:
        """Matching, the function test's session, the sweep's blend buffer and a batch
        (:func:`~onnx_lineage.model.footprint.determine_footprint`); ``match`` fits where they
        do not."""
        a, b = run.a.proto, run.b.proto
        return (determine_footprint(a, b, min(self.rows, len(run.data)), self.copies != 0),
                (("`match` (the data-free tests)", match_footprint(a, b)),))

    def run(self, run: Run) -> DeterminationResult:
        """The tests in order (the module docstring) on a run that has begun."""
        a, b, step, t0, alpha = run.a, run.b, run.step, run.started, self.alpha
        m = self.match_result or match(a, b, progress=step, rng=run.rng)
        t_match = time.perf_counter()
        notes = list(m.limits) + list(run.data.notes)
        step("independence tests without data (unit order, aligned weights, same values)")
        free = data_free(m, alpha)
        release_pages()
        tests = free.tests
        t_tests = time.perf_counter()
        decided = decide(tests, alpha).related is True
        gates, by_function = gated_classes(m), False
        if gates:  # the function test: before the sweep, and it may spare the basin test
            tests.append(_function(run, m, gates, self.device, None if decided and not
                                   self.all_tests else share(alpha, FUNCTION, True)))
            by_function = rejects(FUNCTION, tests[-1].p_value, alpha, True)
            decided = decide(tests, alpha).related is True
        t_function = time.perf_counter()
        level = share(alpha, BASIN, bool(gates))
        copies = copies_for(level) if self.copies is None else int(self.copies)
        path = _Path()
        if m.pairs and copies > 0:
            how = _How(device=self.device, output=self.output, points=self.points,
                       rows=self.rows, copies=copies if self.all_tests or not decided else 0,
                       level=level, step=step)
            path = _sweep(run, m, how)
            notes += path.notes
        if copies > 0 and path.basin is None and decided:
            before = "the tests before it" if by_function else "the data-free tests"
            tests.append(TestResult(BASIN, None, None, BASIN_NULL,
                                    reason=f"not run: {before} already reject independence"))
        elif copies > 0:  # no path: the test says it did not run
            tests.append(path.basin or registered(BASIN).run(Evidence(m), level))
        v = decide(tests, alpha, no_units(m))
        t_verdict = time.perf_counter()
        diff = lowrank.difference(m).to_dict() if v.related and m.pairs else None
        t_difference = time.perf_counter() - t_verdict
        between = None
        if self.also:
            step("whether B sits between A and the other models")
            between = attribute(b, [a, *self.also], alpha=alpha, seed=run.seed).to_dict()
        sims = [(mt.similarity, mt.cls.width) for mt in free.matches]
        similarity = (float(sum(s * w for s, w in sims) / sum(w for _, w in sims)) if sims
                      else None)
        return DeterminationResult(
            model_a=a.name, model_b=b.name, verdict=v.verdict, related=v.related, reason=v.reason,
            alpha=alpha, threshold=alpha, p_value=v.p_value, tests=list(tests),
            shared_layers=v.shared_layers, barrier=path.barrier, barrier_unaligned=path.unaligned,
            error_barrier=path.error_barrier, similarity=similarity, coverage=m.coverage,
            criterion=path.criterion, interpolated_params=path.moved,
            interpolated_fraction=path.fraction, curve=path.curve, transforms=m.transforms,
            notes=notes, provider=path.provider, queries=path.queries,
            seconds=run.seconds(),
            timings={"match": t_match - t0, "tests": t_tests - t_match, "sweep": path.sweep_seconds,
                     "sweep_unaligned": path.unaligned_seconds, "basin": path.basin_seconds,
                     "difference": t_difference,
                     **({"function": t_function - t_tests} if gates else {})},
            match=m.to_dict(), difference=diff, between=between)


def _sweep(run, m: MatchResult, how: _How) -> _Path:
    """The paper's sweep along A -> B aligned, the same in B's own order, and the basin test."""
    t0, step = time.perf_counter(), how.step
    step("interpolation sweep: building the interpolated model")
    plan = plan_path(run.a, run.b, m)
    out = _Path(fraction=plan.fraction, moved=sum(e.a.size for e in plan.endpoints),
                notes=list(plan.notes))
    if not plan.endpoints or not all(e.site.writable for e in plan.endpoints):
        out.basin = TestResult(BASIN, None, None, BASIN_NULL, reason="not run: neither model's "
                               "graph can take interpolated weights (both quantized)")
        return out
    pick = np.random.default_rng(ROWS_SEED)
    sample = run.data.subset(sample_rows(run.data, how.rows, pick))
    sweep = Sweep(plan.base, plan.endpoints, sample, None, how.device, how.output)
    if sweep.ignored:
        out.notes.append(f"data arrays not used by the model: {', '.join(sweep.ignored)}")
    scale = _aligned_curve(out, sweep, plan, sample, run, how)
    out.sweep_seconds = time.perf_counter() - t0
    if _aligned(plan.match):  # the path before alignment: B in its own unit order
        step("interpolation sweep before alignment (B in its own unit order)")
        _own_order(sweep, plan)
        out.unaligned = barrier_of(run_sweep(sweep, 11, refine=False, progress=lambda what: step(
            f"interpolation sweep before alignment (B in its own unit order): {what}"))) / scale
    out.unaligned_seconds = time.perf_counter() - t0 - out.sweep_seconds
    t0 = time.perf_counter()
    out.basin = _basin(sweep, plan, sample, (pick, run.rng), how, scale)
    out.basin_seconds = time.perf_counter() - t0
    out.provider, out.queries = sweep.provider, int(sweep.runner.forward_rows)
    return out


def _aligned_curve(out: _Path, sweep: Sweep, plan, sample, run, how: _How) -> float:
    """The paper's sweep along A -> B aligned into ``out`` (curve, barrier, error barrier), with
    notes where the models do not fit the data; the loss scale the barriers are divided by."""
    step, notes = how.step, out.notes
    step(f"interpolation sweep: {how.points} points on {len(sample)} rows")
    base_scores = sweep.scores(0.0)  # the base model itself: the sweep's first point
    if sweep.kind in ("logits", "probabilities"):  # labels it cannot predict: refused, not clipped
        check_labels(run.data, base_scores.shape[1],
                     run.a.name if plan.base_name == "A" else run.b.name)
    targets, out.criterion, scale, n_classes = _targets(sweep, sample, base_scores, plan.base_name)
    sweep.targets = targets
    out.curve = run_sweep(sweep, how.points, progress=lambda what: step(
        f"interpolation sweep on {len(sample)} rows: {what}"))
    out.barrier = barrier_of(out.curve) / scale
    if sweep.kind in ("logits", "probabilities"):
        out.error_barrier = barrier_of(out.curve, "error")
    for c in out.curve:
        c["loss_normalised"] = c["loss"] / scale
    if sample.y is not None and sweep.kind in ("logits", "probabilities", "labels"):
        chance = 1.0 - 1.0 / max(n_classes, 2)
        if max(out.curve[0]["error"], out.curve[-1]["error"]) > 0.5 * chance:
            notes.append(f"the models do not fit this data (error {out.curve[0]['error']:.2f} and "
                         f"{out.curve[-1]['error']:.2f}; chance {chance:.2f}): the loss path "
                         "cannot tell a shared basin")
    if plan.fraction < 1.0:
        notes.append(f"the sweep moved {plan.fraction:.0%} of the matched parameters; the rest "
                     f"keep {plan.base_name}'s values along the path")
    return scale


def _basin(sweep: Sweep, plan, sample, rngs: tuple, how: _How, scale: float) -> TestResult | None:
    """The basin test (None when no copies are asked for; a result that says why where it
    cannot run); ``rngs`` draws its rows and its copies."""
    (pick, rng), copies, step = rngs, how.copies, how.step
    if copies <= 0:
        return None
    if plan.fraction < MIN_INTERPOLATED:
        return TestResult(BASIN, None, None, BASIN_NULL, reason=(
            f"not run: the sweep can write only {plan.fraction:.0%} of the matched parameters"))
    step(f"basin test: B against up to {copies} copies with its units permuted")
    _own_order(sweep, plan)
    rows = sweep if len(sample) <= BASIN_ROWS else sweep.subset(
        np.sort(pick.choice(len(sample), BASIN_ROWS, replace=False)))
    probe = Probe(rows, plan.keys, plan.match.correspondence.b_own, symmetry_classes(plan.match),
                  rng=rng, copies=copies, scale=scale, progress=lambda what: step(f"basin test: {what}"))
    return registered(BASIN).run(Evidence(plan.match, path=probe), how.level)


def _function(run, m: MatchResult, gates: list, device: str, level: float | None) -> TestResult:
    """The function test on the run's data at ``level`` (None: not run, the data-free tests
    having decided)."""
    if level is None:
        return TestResult(FUNCTION, None, None, registered(FUNCTION).null, exact=False,
                          reason="not run: the data-free tests already reject independence")
    run.step("function test: the gated units' values on the data, in both models")
    corr = m.correspondence
    a_out = {layer.index: layer.output for layer in corr.a_layers}
    b_out = {layer.index: layer.output for layer in corr.b_layers}
    gates = [g for g in gates if all(a_out[p.a] and b_out[p.b] for p in (g.gate, g.up))]
    if not gates:  # no projection's output to read: the test says so
        return registered(FUNCTION).run(Evidence(m, values=Values([], {}, {})), level)
    a_used = sorted({p.a for g in gates for p in (g.gate, g.up)})
    b_used = sorted({p.b for g in gates for p in (g.gate, g.up)})
    try:
        va = unit_values(run.a.proto, [a_out[i] for i in a_used], run.data, device=device,
                         name=run.a.name)
        vb = unit_values(run.b.proto, [b_out[i] for i in b_used], run.data, device=device,
                         name=run.b.name)
    except LineageError as exc:  # over the memory budget, say: the verdict cannot be unrelated
        return TestResult(FUNCTION, None, None, registered(FUNCTION).null, exact=False,
                          reason=f"not run: {exc}")
    values = Values(gates, {i: va[a_out[i]] for i in a_used}, {i: vb[b_out[i]] for i in b_used})
    run.step("function test: matching the units through both projections")
    return registered(FUNCTION).run(Evidence(m, values=values), level)


def _aligned(m: MatchResult) -> bool:
    """Whether alignment permuted or rescaled any of B's units."""
    moves = ("permutation", "scale", "stream permutation")
    return any(t in p["transforms"] for p in m.pairs for t in moves)


def _own_order(sweep: Sweep, plan) -> None:
    """Give the sweep B's parameters in its own unit order where they are other arrays than
    its endpoints' (alignment replaces each array it changes and shares the rest: no array is
    read to compare)."""
    own = plan.match.correspondence.b_own
    for k, (i, key) in enumerate(plan.keys):
        if own[i][key] is not sweep.endpoint_b(k):
            sweep.set_b(k, own[i][key])


def _targets(sweep: Sweep, sample: Dataset, base_scores: np.ndarray, base_name: str):
    """What the loss scores against, its name, the loss scale (log of the classes) and the
    number of classes."""
    kind = sweep.kind
    classes = kind in ("logits", "probabilities", "labels")
    if classes and sample.y is not None:
        targets, criterion = sample.y, "cross-entropy against the labels"
    elif classes:
        targets = (base_scores[:, 0].astype(np.int64) if kind == "labels"
                   else np.argmax(base_scores, axis=1))
        criterion = f"cross-entropy against {base_name}'s predictions"
    else:
        return None, "functional deviation from the straight line of outputs", 1.0, 0
    if kind == "labels":
        criterion = "error rate (label-only model)"
    n_classes = base_scores.shape[1] if kind != "labels" else int(targets.max()) + 1
    scale = math.log(max(n_classes, 2)) if kind in ("logits", "probabilities") else 1.0
    return targets, criterion, scale, n_classes
