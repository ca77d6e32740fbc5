"""Evidence: independence tests with stated nulls, and the verdict they support.

One module per test, each a small function returning a :class:`TestResult` with its statistic,
its null hypothesis and assumptions, per-class p-values and how they were combined:

* :mod:`.unit_order`: did B keep A's order of hidden units? Exact under independent
  initialisation and permutation-equivariant training.
* :mod:`.basin`: the paper's loss-basin test made exact, against permuted copies of B.
* :mod:`.aligned`: is B a permuted copy of A? Calibrated on measured independent pairs.
* :mod:`.same_values`: does B hold A's trained values, to the coarser model's rounding? Needs no
  symmetry class; calibrated.

:mod:`onnx_lineage.matching.classes` finds the symmetry classes and matches them equivariantly
(the correspondence, below the tests); :mod:`.permutation` computes Monte Carlo p-values for any
statistic; :mod:`.combine` combines p-values, each method named with the dependence it allows;
:mod:`.verdict` turns the tests into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx_lineage.evidence.aligned import aligned_test
from onnx_lineage.matching.classes import ClassMatch, SymmetryClass, match_classes, symmetry_classes
from onnx_lineage.evidence.result import TestResult
from onnx_lineage.evidence.same_values import same_values_test
from onnx_lineage.evidence.unit_order import unit_order_test
from onnx_lineage.evidence.registry import TESTS, Evidence
from onnx_lineage.evidence.verdict import WEIGHTS, Verdict, decide, share

__all__ = ["ClassMatch", "DataFree", "Evidence", "SymmetryClass", "TestResult", "Verdict",
           "WEIGHTS", "aligned_test", "data_free", "decide", "match_classes", "same_values_test", "share",
           "symmetry_classes", "unit_order_test"]


@dataclass(frozen=True)
class DataFree:
    """The evidence that needs no data: classes, their matching, and the two data-free tests."""

    classes: list
    matches: list
    unit_order: TestResult
    aligned: TestResult
    same_values: TestResult

    @property
    def tests(self) -> list:
        """The three data-free tests, in the order they are reported."""
        return [self.unit_order, self.aligned, self.same_values]


def data_free(m, alpha: float = 0.01) -> DataFree:
    """Symmetry classes of a match, their equivariant matching (computed by ``match``), the
    unit-order, aligned and same-values tests.

    Parameters
    ----------
    m : MatchResult
        With its classes' matching (``match(..., rng=...)`` breaks its ties); a match made
        without ``permutations`` has them matched here, ties broken with seed 0.
    alpha : float
        The verdict's level (each test is read at its share, :data:`WEIGHTS`).
    """
    corr = m.correspondence
    classes, matches = corr.classes, corr.class_matches
    if matches is None:
        classes = symmetry_classes(m)
        matches = match_classes(classes, corr.a_params, corr.b_own, np.random.default_rng(0))
    evidence = Evidence(m, matches)
    ran = {t.name: t.run(evidence, t.level(alpha)) for t in TESTS if not t.needs_data}
    return DataFree(classes, matches, ran["unit_order"], ran["aligned"], ran["same_values"])
