"""The basin test: the paper's loss-basin test, made exact.

Statistic: the loss midway between A and B in B's own unit order,
``L(theta_A / 2 + theta_B / 2)`` (lower: more of a shared basin), normalised and reported as its
excess over the straight line between the end losses.

Null: B was initialised independently of A and trained equivariantly to permuting its hidden
units. Then B and ``pi B``, B with every hidden-unit class permuted at random (the same function),
are equally likely, and so are the midway losses of A-B and of A-``pi B``. The p-value is the
share of copies whose midway loss is no higher than B's, ``(1 + k) / (1 + T)`` after ``T``
copies; the copies are drawn until Gandy's sequential procedure decides on which side of the
test's level the share of all copies lies (:mod:`.sequential`): an independent model stops after
a handful, a model below every copy after about ``ln(1000) / level``, and the chance that another
seed decides otherwise is at most 1 in 1,000 unless the share lies within about a fifth to twice
the level (such a share often reaches the most copies allowed undecided: the p-value is then the
upper end of the share's 99% interval, which accuses only if even that is at most the level).
A model in A's basin and unit order sits at the bottom; where every path is flat (a nearly convex
task) the copies tie with B and the test says it cannot tell.

The copies permute the hidden-unit classes (residual streams only when there is no other class:
their members hold most of a transformer's parameters, and a permutation of any subgroup keeps
the test exact). Where the sweep cannot write most of the matched parameters the test does not
run: a path with the rest frozen is no evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from onnx_lineage.evidence.result import TestResult
from onnx_lineage.evidence.rows import BasinRow
from onnx_lineage.evidence.sequential import CONFIDENCE, Decision, decide

NAME = "basin"
NULL = ("B initialised independently of A and trained equivariantly to permuting hidden units: "
        "the loss midway between A and B is exchangeable with the loss midway between A and "
        "copies of B with its hidden units permuted")


@dataclass(frozen=True)
class Probe:
    """The path the test runs on, and how far it may go.

    Attributes
    ----------
    sweep : Sweep
        The interpolated model on the test's rows, holding B in its own unit order.
    keys, own, classes, rng, copies, scale, progress
        :func:`basin_test`'s.
    """

    sweep: object
    keys: list
    own: dict
    classes: list
    rng: np.random.Generator
    copies: int
    scale: float = 1.0
    progress: Callable[[str], None] | None = None


def on_path(probe: Probe | None, level: float) -> TestResult:
    """The test on ``probe`` at ``level`` (the registry's signature); without a path, a result
    that says it did not run."""
    if probe is None:
        return TestResult(NAME, None, None, NULL, reason="not run: nothing to interpolate")
    return basin_test(probe.sweep, probe.keys, probe.own, probe.classes, probe.rng, alpha=level,
                      copies=probe.copies, scale=probe.scale, progress=probe.progress)


def copies_for(alpha: float) -> int:
    """The most copies the test draws at level ``alpha``: ``30 / alpha`` (9,000 at the default
    level's third), with which the resampling risk is within its bound unless the share of copies
    as low as B lies within about a fifth to twice ``alpha``."""
    return int(np.ceil(30.0 / alpha - 1e-9))


def permuted_classes(classes: list) -> list:
    """The classes the copies permute: hidden units and channels, or the streams if none; not
    pruned classes, whose smaller model's zero units sit at the end, not at random, nor pinned
    ones (a stream that is the model's output): permuting those changes the function."""
    usable = [c for c in classes if c.width >= 2 and not c.pruned and not c.pinned]
    hidden = [c for c in usable if c.kind != "stream"]
    return hidden or usable


def permuted_copy(own: dict, touched: dict, perms: list) -> dict:
    """B with its units permuted, as the interpolated model takes it
    (:meth:`~onnx_lineage.analyses.interpolation.InterpolatedModel.weights_with`): endpoint
    index to a function that makes its value when its turn comes, a layer at a time with every
    class that moves it, so that the copy in hand is one layer (each tensor once, however many
    classes share it).

    Parameters
    ----------
    own : dict of layer index to dict of str to ndarray
        B's parameters in its own unit order.
    touched : dict of layer index to list of (int, str)
        The endpoints (index, parameter name) of each layer a class moves.
    perms : list of (SymmetryClass, ndarray)
        Each class and its permutation.
    """
    made: dict = {}

    def value(layer: int, key: str) -> np.ndarray:
        if made.get("layer") != layer:
            params = {layer: own[layer]}
            for c, perm in perms:
                if layer in c.layers:
                    c.permute(params, perm, only={layer})
            made.update(layer=layer, params=params[layer])
        return made["params"][key]

    return {n: partial(value, layer, key) for layer, ends in touched.items() for n, key in ends}


def basin_test(probe, keys: list, own: dict, classes: list, rng: np.random.Generator,
               alpha: float, copies: int, scale: float = 1.0, progress=None) -> TestResult:
    """Midway loss of A and B against A and randomly permuted copies of B.

    Parameters
    ----------
    probe : Sweep
        The interpolated model on the test's rows, holding B in its own unit order.
    keys : list of (int, str)
        Layer index and parameter name of each of the probe's endpoints.
    own : dict of layer index to dict of str to ndarray
        B's parameters in its own unit order (in the base model's layout).
    classes : list of SymmetryClass
    rng : numpy Generator
    alpha : float
        The level this test is read at: the copies are drawn until it is decided whether B's
        p-value is at most ``alpha`` (:func:`.sequential.decide`).
    copies : int
        Most permuted copies (:func:`copies_for`).
    scale : float
        Divides the losses for the reported statistic (log of the number of classes).
    progress : callable, optional
        Called with what the test is doing before each copy.
    """
    permuted = permuted_classes(classes)
    if not permuted:
        return TestResult(NAME, None, None, NULL, power=False,
                          power_reason="no hidden units to permute",
                          reason="no hidden units: every copy of B would be B itself")
    chord = 0.5 * (probe.point(0.0)["loss"] + probe.point(1.0)["loss"])
    observed = probe.point(0.5)["loss"]
    members = {x for c in permuted for x in c.layers}
    touched: dict[int, list] = {}  # layer -> its endpoints (slot, key)
    for n, (layer, key) in enumerate(keys):
        if layer in members:
            touched.setdefault(layer, []).append((n, key))
    excess = []
    step = progress or (lambda what: None)

    low = 0  # copies as low as B so far

    def draw() -> float:
        nonlocal low
        step(f"copy {len(excess) + 1} of up to {copies} ({low} as low as B so far)")
        perms = [(c, rng.permutation(c.width)) for c in permuted]
        loss = probe.point_with(0.5, permuted_copy(own, touched, perms))["loss"]
        excess.append(loss - chord)
        low += int(loss <= observed)
        return loss

    mc = decide(observed, draw, lambda x, obs: x <= obs, alpha, copies)
    ex = np.asarray(excess)
    flat = bool(np.median(ex) <= 1e-6 * max(abs(chord), 1.0))
    stood_out = bool(np.all(ex > 0))
    if flat:
        power_reason = ("every path between A and a permuted copy of B is flat (a nearly convex "
                        "task): a model in A's basin could not stand out")
    elif stood_out:
        power_reason = (f"all {ex.size} permuted copies showed a barrier (median "
                        f"{np.median(ex) / scale:.4f}): a model in A's basin would stand out")
    else:
        power_reason = (f"{int(np.sum(ex <= 0))} of {ex.size} permuted copies showed no barrier")
    return TestResult(
        NAME, float((observed - chord) / scale), mc.p_value, NULL,
        "one test over all classes (their copies permuted together)",
        [BasinRow(c.name, list(c.layers), c.width) for c in permuted],
        power=(not flat) and stood_out and 1.0 / (copies + 1) <= alpha * (1 + 1e-9),
        power_reason=power_reason, reason=_outcome(mc, copies), monte_carlo=mc.to_dict())


def _outcome(mc: Decision, copies: int) -> str:
    """How the copies decided, with the Monte Carlo error."""
    lo, hi = mc.interval
    said = (f"{mc.reached:,} of {mc.draws:,} permuted copies as low as B (share of all copies "
            f"{lo:.2g} to {hi:.2g} at {CONFIDENCE:.0%})")
    side = "at most" if mc.below else "above"
    if mc.outcome == "limit":
        return (f"{said}; undecided after the most copies ({copies:,}): the share is within its "
                "Monte Carlo error of the level, so the p-value is the interval's upper end, "
                f"{side} the level")
    return (f"{said}; stopped early: {side} the level (another seed decides otherwise with "
            f"chance at most {mc.risk:g} unless the share is near the level)")
