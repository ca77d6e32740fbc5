"""What every independence test returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from onnx_lineage.results import to_jsonable


@dataclass(frozen=True)
class TestResult:
    """One test of "B was trained independently of A" on one pair.

    Attributes
    ----------
    name : str
        ``unit_order``, ``basin`` or ``aligned``.
    statistic : float or None
        The test's statistic (its docstring says which).
    p_value : float or None
        None when the test could not run (``reason`` says why).
    null : str
        The null hypothesis and the assumptions it rests on, in words.
    combination : str
        How per-class p-values were combined into ``p_value``.
    classes : list
        Per symmetry class (or layer), the test's row type (:mod:`.rows`): ``name``, ``layers``,
        ``p_value`` and what the test adds (``fixed_points``, ``similarity``, ...).
    power : bool
        Whether the test could have seen lineage of the kind it looks for (``power_reason``).
    power_reason : str
    reason : str
        Why the test did not run, or a note on its outcome.
    exact : bool
        The p-value is exact under the stated null (False: calibrated on measured pairs).
    monte_carlo : dict or None
        For a Monte Carlo test, how its copies decided (:meth:`.sequential.Decision.to_dict`):
        ``copies``, ``as_extreme``, ``decided``, ``interval``, ``confidence``,
        ``resampling_risk``.
    """

    __test__ = False  # not a pytest class

    name: str
    statistic: float | None
    p_value: float | None
    null: str
    combination: str = ""
    classes: list = field(default_factory=list)
    power: bool = False
    power_reason: str = ""
    reason: str = ""
    exact: bool = True
    monte_carlo: dict | None = None

    def to_dict(self) -> dict:
        return to_jsonable(self)
