"""The independence tests in one place: each one's name (its key in the JSON), how reports call
it, whether its p-value is exact or calibrated, and its share of the verdict's level, fixed
before any data is seen. The verdict, the command line, the reports and the demo read them here.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    short : str
        In narrow tables (the demo's).
    """

    name: str
    label: str
    exact: bool
    weight: float
    short: str = ""

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


#: In the order they are reported. The same-values test takes a hundredth of the unit-order
#: test's third: a copy's values give p-values far below any level (1e-300 and less), and the
#: other tests keep their levels (the basin test's copies are sized to its share).
TESTS = (
    TestInfo("unit_order", "unit order", True, 0.99 / 3),
    TestInfo("aligned", "aligned weights", False, 1 / 3, short="aligned"),
    TestInfo("same_values", "same values", False, 0.01 / 3),
    TestInfo("basin", "loss basin", True, 1 / 3, short="basin"),
)
BY_NAME = {t.name: t for t in TESTS}


def registered(name: str) -> TestInfo:
    """The registered test ``name`` (KeyError for a name no test has)."""
    return BY_NAME[name]
