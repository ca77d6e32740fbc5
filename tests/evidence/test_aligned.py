"""The aligned test and its measured null."""

from __future__ import annotations

import numpy as np

from onnx_lineage.evidence.aligned import FLOOR, NullModel, aligned_test, null_model
from onnx_lineage.matching.classes import ClassMatch, SymmetryClass
from onnx_lineage.matching.permutation import Reader


def _match(similarity, width=32, fan_in=65):
    cls = SymmetryClass("layer 0 units", "units", width, (0,), (Reader(1),))
    return ClassMatch(cls, np.arange(width), 0, similarity, fan_in, ("in:0",))


def test_the_committed_null_loads_and_orders_similarities():
    m = null_model()
    assert "independent pairs" in m.source and m.spread > 0
    ps = [m.p_value(s, 65, 32) for s in (0.1, 0.4, 0.7, 0.9, 0.99)]
    assert all(x >= y for x, y in zip(ps, ps[1:]))
    assert m.p_value(1.0, 65, 32) == FLOOR


def test_beyond_the_measured_fan_in_the_null_stays_put():
    m = null_model()
    assert m.mean(10 * m.fan_in_max, 32) == m.mean(m.fan_in_max, 32)
    assert m.mean(64, 1024) > m.mean(64, 32)  # wider layers: a higher null (conservative)


def test_an_exact_copy_is_rejected_and_an_independent_level_is_not():
    assert aligned_test([_match(1.0), _match(0.999)], alpha=0.01).p_value < 1e-6
    r = aligned_test([_match(0.3), _match(0.35)], alpha=0.01)
    assert r.p_value > 0.5 and r.power and not r.exact


def test_without_room_above_the_null_there_is_no_power():
    high = NullModel(0.0, 0.0, 0.0, 9.0, 0.5, 1000, "test")  # independent pairs at cosine 0.9999
    r = aligned_test([_match(1.0)], alpha=0.01, model=high)
    assert not r.power and "align too well" in r.power_reason
