"""The verdict from the tests: related only on a rejection; unrelated only with power."""

from __future__ import annotations

import pytest

from onnx_lineage.evidence.result import TestResult
from onnx_lineage.evidence.rows import OrderRow
from onnx_lineage.evidence.verdict import decide, shared_layers


def _row(name, layers, p):
    return OrderRow(name=name, layers=layers, units=16, statistic=0, fixed_points=0, in_order="0",
                    p_value=p, similarity=0.5)


def _test(name, p, power=True, classes=None):
    classes = classes if classes is not None else [
        _row("layer 0 units", [0, 1], p)]
    return TestResult(name, 0.5, p, "null", classes=classes, power=power, power_reason="why")


def test_a_rejection_makes_related_and_names_the_layers():
    v = decide([_test("unit_order", 1e-20), _test("aligned", 0.4)], 0.01)
    assert v.verdict == "related" and v.related is True and v.shared_layers == [0, 1]
    assert v.p_value == pytest.approx(3e-20)


def test_nothing_rejects_with_power_is_unrelated():
    v = decide([_test("unit_order", 0.3), _test("aligned", 0.6), _test("basin", 0.5)], 0.01)
    assert v.verdict == "unrelated" and v.related is False and v.shared_layers == []


def test_without_classes_it_is_undetermined_for_the_reason_given():
    tests = [_test("unit_order", None, power=False, classes=[]),
             _test("aligned", None, power=False, classes=[])]
    v = decide(tests, 0.01)
    assert v.verdict == "undetermined" and "convex" not in v.reason  # nothing says it is
    v = decide(tests, 0.01, "no layer in common: different architectures")
    assert v.verdict == "undetermined"
    assert v.reason == "no test can tell: no layer in common: different architectures"


def test_when_alignment_cannot_tell_a_permuted_copy_it_is_undetermined():
    v = decide([_test("unit_order", 0.4), _test("aligned", 0.5, power=False)], 0.01)
    assert v.verdict == "undetermined" and "permuted copy" in v.reason


def test_aligned_evidence_between_null_and_copy_is_inconclusive():
    v = decide([_test("unit_order", 0.4), _test("aligned", 0.01)], 0.01)
    assert v.verdict == "undetermined" and "not enough to accuse" in v.reason


def test_the_basin_test_alone_can_decide():
    v = decide([_test("unit_order", 0.4), _test("aligned", 0.6), _test("basin", 1 / 300)], 0.01)
    assert v.verdict == "related"


def test_shared_layers_are_only_the_rejected_classes():
    classes = [_row("a", [0, 1], 1e-9), _row("b", [1, 2], 0.6)]
    assert shared_layers([_test("unit_order", 1e-8, classes=classes)], 0.01) == [0, 1]
