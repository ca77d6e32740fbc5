"""The verdict from the tests: ``related`` only when a valid test rejects independence.

* ``related``: the tests combined by weighted Bonferroni (:data:`WEIGHTS`, fixed beforehand;
  valid whatever their dependence) reject "B was trained independently of A" at ``alpha``. The
  shared part is named: the layers of the classes that Holm's procedure rejects within each
  test at its share of ``alpha``.
* ``unrelated``: nothing rejects, and the tests had the power to see lineage of both kinds: a
  copy in A's unit order (the unit-order test) and a permuted copy (the aligned test); for models
  with gated units also a fine-tuned copy with its units permuted or its stream rotated (the
  function test, which must have run with power).
* ``undetermined``: otherwise, with the reason (no hidden units to compare: the caller says why,
  a convex model only when it is one; layers too small to tell a permuted copy; aligned evidence
  in between).
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx_lineage.evidence.combine import bonferroni, holm
from onnx_lineage.evidence.function import NAME as FUNCTION
from onnx_lineage.evidence.registry import BY_NAME, TESTS, registered, weights
from onnx_lineage.evidence.result import TestResult
from onnx_lineage.wording import ranges

#: Shares of ``alpha`` given to each test before any data is seen, for models without gated
#: units (:func:`.registry.weights`).
WEIGHTS = {t.name: t.weight for t in TESTS}
#: The aligned test's p-values within this factor of its share of alpha are inconclusive: no
#: accusation, and no acquittal either.
INCONCLUSIVE = 10.0


@dataclass(frozen=True)
class Verdict:
    """``verdict``, ``related``, ``reason``, the combined ``p_value`` and the shared layers."""

    verdict: str
    related: bool | None
    reason: str
    p_value: float
    shared_layers: list


def share(alpha: float, name: str, gated: bool = False) -> float:
    """The level test ``name`` is read at (``gated``: the models have gated units)."""
    return registered(name).level(alpha, gated)


def gated(tests: list[TestResult]) -> bool:
    """Whether ``tests`` are those of models with gated units: the function test is among
    them (run or not)."""
    return any(t.name == FUNCTION for t in tests)


def rejects(name: str, p_value: float | None, alpha: float, is_gated: bool = False) -> bool:
    """Whether test ``name`` with ``p_value`` rejects independence at its share of ``alpha``
    (with room for rounding: ``1 / (T + 1)`` copies are sized to reach it exactly)."""
    return p_value is not None and p_value <= share(alpha, name, is_gated) * (1 + 1e-9)


def decide(tests: list[TestResult], alpha: float, no_units: str | None = None) -> Verdict:
    """Verdict from the tests that ran (see the module docstring); ``no_units`` is why the
    models have no hidden units to compare, in the models' own terms, said when the unit-order
    test has no class."""
    by, is_gated = {t.name: t for t in tests}, gated(tests)
    p = bonferroni({t.name: t.p_value for t in tests}, weights(is_gated))
    if p <= alpha * (1 + 1e-9):
        rejecting = [t for t in tests if rejects(t.name, t.p_value, alpha, is_gated)]
        shared = shared_layers(tests, alpha)
        where = f" in layers {ranges(shared)}" if shared else ""
        why = "; ".join(f"{_label(t)} p = {t.p_value:.1e} ({t.reason})" for t in rejecting)
        return Verdict("related", True, f"independence rejected at alpha {alpha:g}{where}: {why}",
                       p, shared)
    order, aligned = by.get("unit_order"), by.get("aligned")
    if order is None or not order.power:
        why = order.reason if order is not None and order.reason else "nothing to compare"
        if no_units and (order is None or not order.classes):
            why = no_units
        same = by.get("same_values")
        if same is not None and same.power:  # it could have seen a copy, and saw none
            why += (f"; nor do they share trained values (same values p = {same.p_value:.2g}), "
                    "so B is no copy or conversion of A, but could still be trained from it")
        return Verdict("undetermined", None, f"no test can tell: {why}", p, [])
    if aligned is None or not aligned.power:
        return Verdict("undetermined", None, "B's units are not in A's order, and after "
                       "alignment these layers cannot tell a permuted copy from an independent "
                       f"model ({aligned.power_reason if aligned else 'not run'})", p, [])
    if aligned.p_value is not None and aligned.p_value <= INCONCLUSIVE * share(alpha, "aligned"):
        return Verdict("undetermined", None, f"B's units are not in A's order; after alignment "
                       f"its weights are closer to A's than independent models' usually are "
                       f"(aligned p = {aligned.p_value:.1e}), but not enough to accuse", p, [])
    function = by.get(FUNCTION)
    if function is not None and not function.power:  # gated units, where only it can look
        why = function.reason if function.p_value is None else function.power_reason
        return Verdict("undetermined", None, "no test rejects independence, but the weight tests "
                       "see only copies: a fine-tune whose units were permuted or whose stream "
                       f"was rotated shows only in the function test, which could not tell "
                       f"({why})", p, [])
    could = [order.power_reason, aligned.power_reason] + (
        [function.power_reason] if function is not None else [])
    return Verdict("unrelated", False, f"no test rejects independence at alpha {alpha:g} (p = "
                   f"{p:.2g}), and they could have: {'; '.join(could)}", p, [])


def shared_layers(tests: list[TestResult], alpha: float) -> list[int]:
    """A's layers of the classes rejected by Holm's procedure within a test, at its share."""
    layers, is_gated = set(), gated(tests)
    for t in tests:
        rows = [c for c in t.classes if c.p_value is not None]
        if not rows or t.p_value is None:
            continue
        for c, rejected in zip(rows, holm([c.p_value for c in rows],
                                          share(alpha, t.name, is_gated))):
            if rejected:
                layers.update(c.layers)
    return sorted(layers)


def _label(t: TestResult) -> str:
    return BY_NAME[t.name].label if t.name in BY_NAME else t.name
