"""The basin test: the paper's loss-basin test, made exact.

Statistic: the loss midway between A and B in B's own unit order,
``L(theta_A / 2 + theta_B / 2)`` (lower: more of a shared basin), normalised and reported as its
excess over the straight line between the end losses.

Null: B was initialised independently of A and trained equivariantly to permuting its hidden
units. Then B and ``pi B``, B with every hidden-unit class permuted at random (the same function),
are equally likely, and so are the midway losses of A-B and of A-``pi B``. The p-value counts the
copies whose midway loss is no higher than B's: ``(1 + k) / (1 + T)`` over ``T`` copies, exact
(:func:`.permutation.monte_carlo`). A model in A's basin and unit order sits at the bottom; where
every path is flat (a nearly convex task) the copies tie with B and the test says it cannot tell.

The copies permute the hidden-unit classes (residual streams only when there is no other class:
their members hold most of a transformer's parameters, and a permutation of any subgroup keeps
the test exact). Where the sweep cannot write most of the matched parameters the test does not
run: a path with the rest frozen is no evidence.
"""

from __future__ import annotations

import numpy as np

from onnx_lineage.evidence.permutation import monte_carlo
from onnx_lineage.evidence.result import TestResult

NAME = "basin"
NULL = ("B initialised independently of A and trained equivariantly to permuting hidden units: "
        "the loss midway between A and B is exchangeable with the loss midway between A and "
        "copies of B with its hidden units permuted")


def copies_for(alpha: float) -> int:
    """The fewest copies with which the test can reach ``alpha``: ``ceil(1 / alpha) - 1``."""
    return max(int(np.ceil(1.0 / alpha - 1e-9)) - 1, 1)


def permuted_classes(classes: list) -> list:
    """The classes the copies permute: hidden units and channels, or the streams if none; not
    pruned classes, whose smaller model's zero units sit at the end, not at random, nor pinned
    ones (a stream that is the model's output): permuting those changes the function."""
    usable = [c for c in classes if c.width >= 2 and not c.pruned and not c.pinned]
    hidden = [c for c in usable if c.kind != "stream"]
    return hidden or usable


def basin_test(probe, keys: list, own: dict, classes: list, rng: np.random.Generator,
               alpha: float, copies: int, scale: float = 1.0, stop_after: int = 1,
               progress=None) -> TestResult:
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
        The level this test is read at (to judge whether it could have told).
    copies : int
        Most permuted copies (:func:`copies_for`).
    scale : float
        Divides the losses for the reported statistic (log of the number of classes).
    stop_after : int
        Stop once this many copies reach B's loss, with the exact sequential p-value of Besag
        and Clifford (``stop_after / copies drawn``). The default, 1, stops as soon as the test
        can no longer reach ``alpha`` (its copies are sized so that only a B below every copy
        does): under independence that takes about ``ln(copies) + 0.6`` copies on average, and
        the p-value reported is coarse (1, 1/2, 1/3, ...) but exact.
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

    def copy_of_b(perms: list):
        # a layer at a time, with every class that moves it, blended as it comes: the copy in
        # hand is one layer
        for layer, ends in touched.items():
            params = {layer: own[layer]}
            for c, perm in perms:
                if layer in c.layers:
                    c.permute(params, perm, only={layer})
            for n, key in ends:  # each tensor once, however many classes share it
                yield n, params[layer][key]

    low = 0  # copies as low as B so far

    def draw() -> float:
        nonlocal low
        step(f"copy {len(excess) + 1} of up to {copies} ({low} as low as B so far)")
        perms = [(c, rng.permutation(c.width)) for c in permuted]
        loss = probe.point_with(0.5, copy_of_b(perms))["loss"]
        excess.append(loss - chord)
        low += int(loss <= observed)
        return loss

    mc = monte_carlo(observed, draw, lambda x, obs: x <= obs, copies, stop_after)
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
        [{"name": c.name, "layers": list(c.layers), "units": c.width} for c in permuted],
        power=(not flat) and stood_out and 1.0 / (copies + 1) <= alpha * (1 + 1e-9),
        power_reason=power_reason,
        reason=f"{mc.reached} of {mc.draws} permuted copies as low as B"
        + (" (stopped early)" if mc.stopped else ""))
