"""Combining p-values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import combine_pvalues

from onnx_lineage.evidence.combine import bonferroni, fisher, holm


def test_fisher_equals_scipy():
    ps = [0.2, 0.03, 0.7, 0.5]
    assert fisher(ps) == pytest.approx(combine_pvalues(ps, method="fisher").pvalue, rel=1e-9)
    assert fisher([]) == 1.0


def test_fisher_keeps_tiny_p_values_apart_from_zero():
    assert 0 < fisher([1e-200, 1e-250]) < 1e-300 or fisher([1e-200, 1e-250]) == 0.0
    assert fisher([1e-20, 0.5]) < 1e-17


def test_fisher_is_valid_on_uniform_p_values():
    rng = np.random.default_rng(1)
    combined = np.array([fisher(rng.random(5)) for _ in range(4000)])
    assert abs(np.mean(combined <= 0.05) - 0.05) < 0.015


def test_weighted_bonferroni():
    w = {"a": 0.5, "b": 0.25, "c": 0.25}
    assert bonferroni({"a": 0.004, "b": 0.5, "c": None}, w) == pytest.approx(0.008)
    assert bonferroni({"a": 0.9, "b": 0.001, "c": 0.3}, w) == pytest.approx(0.004)
    assert bonferroni({"a": None}, w) == 1.0


def test_holm_steps_down():
    assert holm([0.001, 0.02, 0.04, 0.5], 0.05).tolist() == [True, False, False, False]
    assert holm([0.001, 0.012, 0.04], 0.05).tolist() == [True, True, True]
