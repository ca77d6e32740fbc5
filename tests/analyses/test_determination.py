"""Determination on the demo family and on fixtures; the fast path against the rebuilt reference."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.analyses.determination import (CALIBRATION, Sweep, barrier_of, determine,
                                                 endpoints_for)
from onnx_lineage.analyses.interpolation import InterpolatedModel, rebuilt_model
from onnx_lineage.data import feeds_for
from onnx_lineage.matching import match
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.runner import Runner
from tests.conftest import fixture_path


@pytest.mark.parametrize("member", ["finetuned_light", "finetuned_heavy", "pruned_50", "noisy",
                                    "int8", "obfuscated"])
def test_derived_members_are_related(family, member):
    r = determine(family["parent"], family[member])
    assert r.verdict == "related" and r.related is True
    assert r.barrier <= r.threshold == CALIBRATION["barrier"]
    assert r.coverage == {"a": 1.0, "b": 1.0}
    assert len(r.curve) >= 11


def test_independent_member_is_unrelated(family):
    r = determine(family["parent"], family["independent"])
    assert r.verdict == "unrelated" and r.related is False
    assert r.margin < 0


def test_a_model_is_related_to_itself_with_zero_barrier(family):
    r = determine(family["parent"], family["parent"])
    assert r.barrier == pytest.approx(0.0, abs=1e-7)
    assert r.similarity == pytest.approx(1.0)


def test_obfuscation_needs_alignment(family):
    r = determine(family["parent"], family["obfuscated"])
    assert r.barrier_unaligned is not None and r.barrier_unaligned > 10 * CALIBRATION["barrier"]


def test_same_seed_same_numbers(family):
    r1 = determine(family["parent"], family["independent"], seed=3)
    r2 = determine(family["parent"], family["independent"], seed=3)
    assert r1.to_dict()["curve"] == r2.to_dict()["curve"]
    assert r1.p_value == r2.p_value


@pytest.mark.parametrize("a,b", [("torch_mlp_legacy", "torch_mlp_int8_qdq"),
                                 ("torch_cnn_bn", "torch_cnn_bn"),
                                 ("torch_cnn_folded", "torch_cnn_int8_qoperator")])
def test_fast_path_equals_rebuilt_reference(digits, a, b):
    m = match(fixture_path(a), fixture_path(b))
    eps, _ = endpoints_for(m)
    base = load_model(fixture_path(a)).proto
    from onnx_lineage.model.parameters import extract_layers
    extract_layers(base)  # names nodes the same way as the match did
    fast = InterpolatedModel(base, eps)
    runner = Runner(fast.proto, device="cpu", static_inputs=frozenset(fast.names))
    feeds, _ = feeds_for(runner.inputs, digits.subset(np.arange(200)))
    for alpha in (0.0, 0.37, 1.0):
        got = runner.predict(feeds, static=fast.weights(alpha)).scores
        ref = Runner(rebuilt_model(base, eps, alpha), device="cpu").predict(feeds).scores
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_conv_weights_really_change_along_the_path(digits):
    """The trap of SessionOptions.add_initializer: overridden Conv weights silently ignored."""
    m = match(fixture_path("torch_cnn_folded"), fixture_path("torch_cnn_folded"))
    eps, _ = endpoints_for(m)
    from onnx_lineage.analyses.interpolation import Endpoint
    zeroed = [Endpoint(e.site, e.a, np.zeros_like(e.b)) for e in eps]
    base = load_model(fixture_path("torch_cnn_folded")).proto
    from onnx_lineage.model.parameters import extract_layers
    extract_layers(base)
    sweep = Sweep(base, zeroed, digits.subset(np.arange(100)), digits.y[:100], "cpu")
    s0, s1 = sweep.scores(0.0), sweep.scores(1.0)
    assert np.abs(s1).max() < 1e-6 < np.abs(s0).max()


def test_label_only_and_linear_classifier_models(digits):
    r = determine(fixture_path("sklearn_logreg"), fixture_path("sklearn_logreg"))
    assert r.verdict == "related" and r.barrier == pytest.approx(0.0, abs=1e-6)


def test_nothing_in_common_is_undetermined():
    r = determine(fixture_path("torch_mlp_legacy"), fixture_path("torch_lstm"))
    assert r.verdict == "undetermined" and r.related is None
    assert "nothing to interpolate" in r.reason


def test_new_head_on_the_trunk_is_related(family, tmp_path):
    import onnx

    from onnx_lineage.demo.family import mlp_to_onnx
    from onnx_lineage.model.parameters import extract_layers
    layers = extract_layers(load_model(family["finetuned_light"]).proto)
    rng = np.random.default_rng(0)
    w = [layer.weight for layer in layers[:2]] + [rng.normal(0, .1, (5, 32)).astype(np.float32)]
    b = [layer.params["bias"] for layer in layers[:2]] + [np.zeros(5, np.float32)]
    onnx.save(mlp_to_onnx(w, b), tmp_path / "transfer.onnx")
    r = determine(family["parent"], tmp_path / "transfer.onnx")
    assert r.verdict == "related"
    assert r.coverage["a"] < 1.0 and any("partial reuse" in n for n in r.notes)


def test_barrier_of_a_convex_curve_is_zero():
    curve = [{"alpha": a, "loss": (a - 0.5) ** 2} for a in np.linspace(0, 1, 11)]
    assert barrier_of(curve) == 0.0
    bump = [{"alpha": a, "loss": 1.0 - (2 * a - 1) ** 2} for a in np.linspace(0, 1, 11)]
    assert barrier_of(bump) == pytest.approx(1.0)


@pytest.mark.parametrize("barrier,sim,verdict", [
    (0.0, 0.99, "related"), (0.5, 0.99, "related"), (0.0, 0.1, "related"),
    (0.5, 0.1, "unrelated"), (0.0, None, "related"), (0.5, None, "unrelated"),
    (float("nan"), 0.99, "undetermined"), (None, 0.99, "related"), (None, 0.1, "unrelated"),
    (None, None, "undetermined")])
def test_decision_table(barrier, sim, verdict):
    from onnx_lineage.analyses.determination import decide
    assert decide(barrier, sim)[0] == verdict
