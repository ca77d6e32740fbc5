"""The function test: gated units matched by what they compute, through both projections.

The models are ``tests.residual.rms_model(gated=True)``: a pre-norm residual token classifier
with SwiGLU feed-forward layers and RMS norms without a gain, so that permuting the hidden units,
permuting the stream and rotating the stream are all the same function."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.analyses.determination import determine
from onnx_lineage.evidence.function import (NAME, Values, agreement_tail, function_test,
                                            gated_classes)
from onnx_lineage.evidence.registry import FUNCTION_SHARE, weights
from onnx_lineage.evidence.unit_order import fixed_point_tail
from onnx_lineage.evidence.verdict import decide
from onnx_lineage.matching import match
from tests.residual import F, permutations, rms_model, rotation, token_data

DATA = token_data(300)


def _function(a, b, **kw):
    """The function test's result in ``determine`` of ``a`` and ``b`` (run even where the
    data-free tests decide; no sweep)."""
    r = determine(a, b, DATA, all_tests=True, copies=0, **kw)
    return r.test(NAME)


def _disguises():
    stream, hidden = permutations()
    return {
        "hidden units permuted": rms_model(gated=True, hidden=hidden),
        "stream rotated": rms_model(gated=True, rotate=rotation()),
        "stream rotated, stream and hidden units permuted":
            rms_model(gated=True, rotate=rotation(), stream=stream, hidden=hidden),
        "fine-tuned (noise 0.5), stream rotated": rms_model(gated=True, noise=0.5,
                                                            rotate=rotation()),
        "fine-tuned heavily (noise 1.0), hidden units permuted":
            rms_model(gated=True, noise=1.0, hidden=hidden),
    }


@pytest.mark.parametrize("how", list(_disguises()))
def test_a_disguised_derived_model_keeps_what_its_units_compute(save, how):
    a, b = save("a", rms_model(gated=True)), save("b", _disguises()[how])
    t = _function(a, b)
    assert t.p_value <= 1e-4 and t.power
    assert all(0 < row.agree <= row.compared == F for row in t.classes)


@pytest.mark.parametrize("seed", [5, 6, 7, 8])
def test_independent_models_are_not_accused(save, seed):
    a = save("a", rms_model(gated=True))
    b = save("b", rms_model(seed=seed, gated=True, rotate=rotation(seed)))
    t = _function(a, b)
    assert t.p_value > 0.01 and t.power
    assert sum(row.agree for row in t.classes) <= 6  # about one per class by chance


def test_a_rotated_copy_is_related_through_the_function_test_where_weights_cannot_tell(save):
    # the stream rotated and both unit axes permuted: the test names the function test
    stream, hidden = permutations()
    a = save("a", rms_model(gated=True, noise=0.0))
    b = save("b", rms_model(gated=True, noise=0.5, rotate=rotation(), stream=stream,
                            hidden=hidden))
    r = determine(a, b, DATA, copies=0)
    assert r.verdict == "related"
    assert r.test(NAME).p_value is not None


def test_models_without_gated_units_have_no_function_test(save):
    a, b = save("a", rms_model()), save("b", rms_model(noise=0.3))
    assert gated_classes(match(a, b)) == []
    r = determine(a, b, DATA, copies=0)
    assert r.test(NAME) is None and "function" not in r.timings


def test_the_basin_test_shares_its_weight_with_the_function_test_for_gated_models():
    plain, gated = weights(False), weights(True)
    assert sum(gated.values()) == pytest.approx(1.0) and sum(plain.values()) == pytest.approx(1.0)
    assert gated["function"] == pytest.approx(FUNCTION_SHARE * plain["basin"])
    assert gated["basin"] + gated["function"] == pytest.approx(plain["basin"])
    assert {k: v for k, v in gated.items() if k not in ("basin", "function")} == {
        k: v for k, v in plain.items() if k not in ("basin", "function")}


def test_a_function_p_value_counts_at_its_share_only_for_gated_models(save):
    a, b = save("a", rms_model(gated=True)), save("b", _disguises()["stream rotated"])
    t = _function(a, b)
    level = 0.01 * weights(True)[NAME]
    assert t.p_value <= level
    assert decide([t], 0.01).related is True


def test_units_constant_on_the_rows_are_left_out(save):
    # B independent, half of its hidden units dead in both projections: their ties must not
    # agree in both matchings
    b_model = rms_model(seed=5, gated=True)
    for init in b_model.graph.initializer:
        if init.name[:3] in ("W1_", "W3_", "b1_"):
            from onnx import numpy_helper
            w = numpy_helper.to_array(init).copy()
            w[..., : F // 2] = 0
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    t = _function(save("a", rms_model(gated=True)), save("b", b_model))
    assert all(row.compared == F // 2 for row in t.classes)
    assert t.p_value > 0.01


def test_without_rows_or_gated_units_the_test_says_why():
    assert "needs data" in function_test(None, 0.01).reason
    empty = function_test(Values([], {}, {}), 0.01)
    assert empty.p_value is None and "no gated hidden units" in empty.reason


@pytest.mark.parametrize("n", [2, 5, 40, 300])
def test_agreements_of_a_full_matching_are_fixed_points(n):
    for f in range(0, min(n, 6) + 1):
        assert agreement_tail(n, n, f) == fixed_point_tail(n, f)


def test_agreements_of_a_partial_matching_are_bounded_by_a_binomial_tail():
    # two independent random injections of m units into n: the bound holds on simulation
    rng, m, n = np.random.default_rng(0), 40, 200
    agree = np.array([np.sum(rng.permutation(n)[:m] == rng.permutation(n)[:m])
                      for _ in range(4000)])
    for f in (1, 2, 3):
        assert np.mean(agree >= f) <= agreement_tail(m, n, f) * 1.1 + 0.005
    assert agreement_tail(m, n, 0) == 1.0 and agreement_tail(m, n, m) < 1e-80


def test_gated_models_are_called_unrelated_only_where_the_function_test_could_see(save):
    a, b = save("a", rms_model(gated=True)), save("b", rms_model(seed=5, gated=True))
    r = determine(a, b, DATA, copies=0)
    assert r.verdict == "unrelated" and "gate and up" not in r.reason
    assert "a copy, however its stream is rotated" in r.reason
    without = [t for t in r.tests if t.name != NAME] + [function_test(None, 0.01)]
    v = decide(without, 0.01)
    assert v.verdict == "undetermined" and "function test" in v.reason and "needs data" in v.reason


def test_values_over_the_memory_budget_leave_the_test_unrun_and_the_verdict_open(save):
    a, b = save("a", rms_model(gated=True)), save("b", rms_model(seed=5, gated=True))
    r = determine(a, b, DATA, copies=0, max_memory=100_000)
    t = r.test(NAME)
    assert t.p_value is None and "memory budget" in t.reason
    assert r.verdict == "undetermined" and "function test" in r.reason


def test_values_not_laid_out_as_the_units_are_not_read(save):
    m = match(save("a", rms_model(gated=True)), save("b", rms_model(gated=True)))
    gates = gated_classes(m)
    rng = np.random.default_rng(0)
    a = {p.a: rng.normal(size=(64, F)) for g in gates for p in (g.gate, g.up)}
    b = {p.b: rng.normal(size=(64, F)) for g in gates for p in (g.gate, g.up)}
    b[gates[0].gate.b] = rng.normal(size=(64, 3))  # the units on another axis
    t = function_test(Values(gates, a, b), 0.01)
    assert len(t.classes) == len(gates) - 1
    b = {k: v[:, :3] if k in (gates[-1].gate.b,) else v for k, v in b.items()}
    assert function_test(Values(gates[-1:], a, b), 0.01).p_value is None
