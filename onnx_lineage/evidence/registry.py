"""The independence tests in one place: each one's name (its key in the JSON), its null, how
reports call it, whether its p-value is exact or calibrated, its share of the verdict's level
(fixed before any data is seen), and, for the tests that need no data, how to run it. The
verdict, the data-free evidence, the command line, the reports and the demo read them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from onnx_lineage.evidence import aligned, basin, same_values, unit_order
from onnx_lineage.evidence.result import TestResult


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
        run keeps its share unspent).
    null : str
        The null hypothesis it tests.
    short : str
        In narrow tables (the demo's); the label when empty.
    run : callable or None
        For a test that needs no data: ``run(m, matches, level) -> TestResult`` on a match
        ``m`` and its classes' matching ``matches``, read at ``level``. None for the basin
        test, which runs inside the interpolation sweep.
    """

    name: str
    label: str
    exact: bool
    weight: float
    null: str
    short: str = ""
    run: Callable[..., TestResult] | None = None

    @property
    def brief(self) -> str:
        """In narrow tables: ``short``, else the label."""
        return self.short or self.label

    @property
    def title(self) -> str:
        """In a table of tests: the label and the kind of p-value."""
        return f"{self.label} ({'exact' if self.exact else 'calibrated'})"

    def level(self, alpha: float) -> float:
        """The level the test is read at, its share of ``alpha``."""
        return alpha * self.weight


#: In the order they run and are reported. The same-values test takes a hundredth of the
#: unit-order test's third: a copy's values give p-values far below any level (1e-300 and less),
#: and the other tests keep their levels (the basin test's copies are sized to its share).
TESTS = (
    TestInfo(unit_order.NAME, "unit order", True, 0.99 / 3, unit_order.NULL,
             run=lambda m, matches, level: unit_order.unit_order_test(matches, level)),
    TestInfo(aligned.NAME, "aligned weights", False, 1 / 3, aligned.NULL, short="aligned",
             run=lambda m, matches, level: aligned.aligned_test(matches, level)),
    TestInfo(same_values.NAME, "same values", False, 0.01 / 3, same_values.NULL,
             run=lambda m, matches, level: same_values.same_values_test(m, level)),
    TestInfo(basin.NAME, "loss basin", True, 1 / 3, basin.NULL, short="basin"),
)
BY_NAME = {t.name: t for t in TESTS}


def registered(name: str) -> TestInfo:
    """The registered test ``name`` (KeyError for a name no test has)."""
    return BY_NAME[name]
