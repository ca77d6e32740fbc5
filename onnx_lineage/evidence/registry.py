"""The independence tests in one place: each one's name (its key in the JSON), its null, how
reports call it, whether its p-value is exact or calibrated, its share of the verdict's level
(fixed before any data is seen), and, for the tests that need no data, how to run it. The
verdict, the data-free evidence, the command line, the reports and the demo read them here.

Every test runs the same way, ``info.run(evidence, level)``: on what a test reads
(:class:`Evidence`: the match, its classes' matching, and, for the test that needs data, the
interpolation path) at its share of the level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from onnx_lineage.evidence import aligned, basin, function, same_values, unit_order
from onnx_lineage.evidence.result import TestResult


@dataclass(frozen=True)
class Evidence:
    """What the tests read.

    Attributes
    ----------
    match : MatchResult
    matches : list of ClassMatch or None
        The symmetry classes' equivariant matching (the unit-order and aligned tests).
    path : basin.Probe or None
        The interpolated model on the data, holding B in its own unit order, for the basin test
        (None where no path was built: that test then says it did not run).
    values : function.Values or None
        Both models' gated units on the same rows, for the function test (None where no rows
        were run).
    """

    match: object
    matches: list | None = None
    path: basin.Probe | None = None
    values: function.Values | None = None


@dataclass(frozen=True)
class TestInfo:
    """One independence test.

    Attributes
    ----------
    name : str
        Its key in ``tests[].name`` of the JSON.
    label : str
        In sentences (a verdict's reason).
    exact : bool
        An exact p-value (True), or one calibrated on measured independent pairs.
    weight : float
        Its share of the verdict's level ``alpha`` (weighted Bonferroni; a test that does not
        run keeps its share unspent), for models without gated units (:func:`weights`).
    null : str
        The null hypothesis it tests.
    short : str
        In narrow tables (the demo's); the label when empty.
    run : callable
        ``run(evidence, level) -> TestResult``: the test on :class:`Evidence`, read at
        ``level``.
    needs_data : bool
        Whether it reads the data (through ``evidence.path``), so runs after the sweep.
    """

    name: str
    label: str
    exact: bool
    weight: float
    null: str
    run: Callable[[Evidence, float], TestResult]
    short: str = ""
    needs_data: bool = False

    @property
    def brief(self) -> str:
        """In narrow tables: ``short``, else the label."""
        return self.short or self.label

    @property
    def title(self) -> str:
        """In a table of tests: the label and the kind of p-value."""
        return f"{self.label} ({'exact' if self.exact else 'calibrated'})"

    def level(self, alpha: float, gated: bool = False) -> float:
        """The level the test is read at, its share of ``alpha`` (:func:`weights`)."""
        return alpha * weights(gated)[self.name]


#: In the order they run and are reported. The same-values test takes a hundredth of the
#: unit-order test's third: a copy's values give p-values far below any level (1e-300 and less),
#: and the other tests keep their levels (the basin test's copies are sized to its share).
TESTS = (
    TestInfo(unit_order.NAME, "unit order", True, 0.99 / 3, unit_order.NULL,
             run=lambda e, level: unit_order.unit_order_test(e.matches, level)),
    TestInfo(aligned.NAME, "aligned weights", False, 1 / 3, aligned.NULL, short="aligned",
             run=lambda e, level: aligned.aligned_test(e.matches, level)),
    TestInfo(same_values.NAME, "same values", False, 0.01 / 3, same_values.NULL,
             run=lambda e, level: same_values.same_values_test(e.match, level)),
    TestInfo(function.NAME, "unit function", False, 0.0, function.NULL, short="function",
             run=lambda e, level: function.function_test(e.values, level), needs_data=True),
    TestInfo(basin.NAME, "loss basin", True, 1 / 3, basin.NULL, short="basin",
             run=lambda e, level: basin.on_path(e.path, level), needs_data=True),
)
BY_NAME = {t.name: t for t in TESTS}
#: Where A and B have gated units (:func:`.function.gated_classes`: known from the architecture
#: before any data), the function test takes this share of the basin test's weight.
FUNCTION_SHARE = 0.5


def weights(gated: bool) -> dict[str, float]:
    """Each test's share of the verdict's level, fixed before any data is seen: the registered
    weights, or, for models with gated units, the basin test's weight split with the function
    test (the data-free tests keep theirs either way)."""
    w = {t.name: t.weight for t in TESTS}
    if gated:
        w[function.NAME] = FUNCTION_SHARE * w[basin.NAME]
        w[basin.NAME] -= w[function.NAME]
    return w


def registered(name: str) -> TestInfo:
    """The registered test ``name`` (KeyError for a name no test has)."""
    return BY_NAME[name]
