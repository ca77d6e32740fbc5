"""The function test: gated units matched by what they compute, through both projections.

The models are ``tests.residual.rms_model(gated=True)``: a pre-norm residual token classifier
with SwiGLU feed-forward layers and RMS norms without a gain, so that permuting the hidden units,
permuting the stream and rotating the stream are all the same function."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.analyses.determination import determine
from onnx_lineage.evidence.function import (INFLATION, NAME, Values, agreement_tail,
                                            function_test, gated_classes)
from onnx_lineage.evidence.registry import FUNCTION_SHARE, weights
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
        "fine-tuned heavily (noise 0.7), hidden units permuted":
            rms_model(gated=True, noise=0.7, hidden=hidden),
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


@pytest.mark.parametrize("m, n", [(40, 40), (300, 300), (40, 200)])
def test_the_tail_bounds_random_matchings_with_five_times_chance_agreement(m, n):
    # two matchings of m units into n that agree on a unit with probability 5 / n (convergent
    # units), the rest independent random injections: the tail is never below what they give
    rng = np.random.default_rng(0)
    forced = (INFLATION - 1) / n  # with chance's own 1 / n: five times chance
    agree = []
    for _ in range(3000):
        first, second = rng.permutation(n)[:m], rng.permutation(n)[:m]
        same = rng.random(m) < forced
        second[same] = first[same]
        agree.append(np.sum(first == second))
    agree = np.array(agree)
    for f in (2, 5, 8, 12):
        assert np.mean(agree >= f) <= agreement_tail(m, n, f) * 1.1 + 0.005
    assert agreement_tail(m, n, 0) == 1.0 and agreement_tail(m, n, m) < 1e-30


def test_convergent_agreement_measured_on_independent_decoders_is_not_significant():
    # the most agreement seen between independent decoders while the null was set (module
    # docstring): 8 of 344 units in one class of four
    assert 4 * agreement_tail(344, 344, 8) > 0.01 / 6
    assert 4 * agreement_tail(344, 344, 40) < 1e-12  # a partial copy still is


def test_gated_layers_without_an_output_to_read_leave_the_test_unrun(save, monkeypatch):
    from onnx_lineage.analyses import determination
    real = determination.gated_classes

    def unnamed(m):  # the projections' outputs not known by name (as a graph could leave them)
        for layer in m.correspondence.a_layers:
            layer.output = ""
        return real(m)
    monkeypatch.setattr(determination, "gated_classes", unnamed)
    monkeypatch.setattr(determination, "unit_values", lambda *a, **k: 1 / 0)  # no pass run
    a, b = save("a", rms_model(gated=True)), save("b", rms_model(seed=5, gated=True))
    t = determine(a, b, DATA, copies=0).test(NAME)
    assert t.p_value is None and "no gated hidden units" in t.reason
