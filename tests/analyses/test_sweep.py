"""The interpolation sweep: the fast path against the rebuilt reference, weights that really move,
and BatchNorm folded in a rebuilt graph so that a kept-BN model can take folded weights."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.analyses.interpolation import Endpoint, InterpolatedModel, rebuilt_model
from onnx_lineage.analyses.sweep import Sweep, barrier_of, endpoints_for, plan_path
from onnx_lineage.data import feeds_for
from onnx_lineage.matching import match
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.runner import Runner
from tests.conftest import fixture_path


@pytest.mark.parametrize("a,b", [("torch_mlp_legacy", "torch_mlp_int8_qdq"),
                                 ("torch_cnn_bn", "torch_cnn_bn"),
                                 ("torch_cnn_folded", "torch_cnn_int8_qoperator")])
def test_fast_path_equals_rebuilt_reference(digits, a, b):
    m = match(fixture_path(a), fixture_path(b))
    eps, _, _ = endpoints_for(m)
    base = load_model(fixture_path(a)).proto
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
    eps, _, _ = endpoints_for(m)
    zeroed = [Endpoint(e.site, e.a, np.zeros_like(e.b)) for e in eps]
    base = load_model(fixture_path("torch_cnn_folded")).proto
    extract_layers(base)
    sweep = Sweep(base, zeroed, digits.subset(np.arange(100)), digits.y[:100], "cpu")
    s0, s1 = sweep.scores(0.0), sweep.scores(1.0)
    assert np.abs(s1).max() < 1e-6 < np.abs(s0).max()


def test_set_b_moves_one_tensor_and_keeps_the_rest(digits):
    m = match(fixture_path("torch_mlp_legacy"), fixture_path("torch_mlp_legacy"))
    eps, _, _ = endpoints_for(m)
    base = load_model(fixture_path("torch_mlp_legacy")).proto
    extract_layers(base)
    model = InterpolatedModel(base, eps)
    before = {k: v.copy() for k, v in model.weights(0.5).items()}
    model.set_b(0, np.zeros_like(eps[0].b))
    after = model.weights(0.5)
    names = list(after)
    np.testing.assert_allclose(after[names[0]], 0.5 * before[names[0]], rtol=1e-6)
    assert all(np.array_equal(after[n], before[n]) for n in names[1:])


@pytest.mark.parametrize("fast", [True, False])
def test_a_point_with_another_b_is_that_of_set_b_and_leaves_the_sweep_as_it_was(
        digits, monkeypatch, fast):
    """The basin test's copies: B replaced for one point, an endpoint at a time, gives the point
    that replacing B would, and the sweep keeps its own B, its computed points and a buffer that
    is blended again for the next alpha."""
    import onnx_lineage.analyses.sweep as S
    monkeypatch.setattr(S, "fast_path_supported", lambda eps: fast)
    m = match(fixture_path("torch_mlp_legacy"), fixture_path("torch_mlp_int8_qdq"))
    eps, _, _ = endpoints_for(m)
    base = load_model(fixture_path("torch_mlp_legacy")).proto
    extract_layers(base)
    rows = digits.subset(np.arange(100))
    sweep, replaced = Sweep(base, eps, rows, digits.y[:100], "cpu"), Sweep(base, eps, rows,
                                                                          digits.y[:100], "cpu")
    assert sweep.fast is fast
    half = sweep.point(0.5)
    other = [(k, -2.0 * eps[k].b) for k in range(0, len(eps), 2)]
    got = sweep.point_with(0.5, {k: (lambda v=v: v) for k, v in other})
    for k, value in other:
        replaced.set_b(k, value)
    assert got == replaced.point(0.5) and got != half
    ran = sweep.runner.forward_rows
    assert sweep.point(0.5) == half and sweep.runner.forward_rows == ran  # kept, not rerun
    for k, e in enumerate(eps):
        assert sweep.endpoint_b(k) is e.b
    fresh = Sweep(base, eps, rows, digits.y[:100], "cpu")
    np.testing.assert_array_equal(sweep.scores(0.3), fresh.scores(0.3))


def test_blending_on_threads_writes_the_same_buffer(monkeypatch):
    """Large models blend their endpoints side by side: the same bits as one at a time, with
    B replaced for one point or not."""
    import onnx_lineage.analyses.interpolation as I
    m = match(fixture_path("torch_cnn_folded"), fixture_path("torch_cnn_folded"))
    eps, _, _ = endpoints_for(m)
    eps = [Endpoint(e.site, e.a, e.b * 1.5 + 0.25) for e in eps]
    base = load_model(fixture_path("torch_cnn_folded")).proto
    extract_layers(base)
    other = [(k, -e.b) for k, e in enumerate(eps) if k % 2]
    got = {}
    for threads, start in ((1, 1 << 40), (3, 0)):
        monkeypatch.setattr(I, "BLEND_THREADS", threads)
        monkeypatch.setattr(I, "THREADS_FROM", start)
        model = InterpolatedModel(base, eps)
        model.weights(0.3)
        at_03 = model.buffer.copy()
        model.weights_with(0.7, {k: (lambda v=v: v) for k, v in other})
        got[threads] = (at_03, model.buffer.copy())
    for x, y in zip(got[1], got[3]):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(*got[3])


def test_a_batchnorm_kept_model_takes_folded_weights_in_a_rebuilt_graph(digits):
    """BN kept in A, folded in B: the sweep must move A's convolutions, not only the head."""
    a, b = load_model(fixture_path("torch_cnn_bn")), load_model(fixture_path("torch_cnn_folded"))
    m = match(a, b)
    assert m.correspondence.folded == "a"
    plan = plan_path(a, b, m)
    assert plan.base_name == "A" and plan.fraction == pytest.approx(1.0)
    assert any("folded" in n for n in plan.notes)
    sweep = Sweep(plan.base, plan.endpoints, digits.subset(np.arange(300)), None, "cpu")
    ra, rb = Runner(a.proto, device="cpu"), Runner(b.proto, device="cpu")
    feeds, _ = feeds_for(ra.inputs, digits.subset(np.arange(300)))
    np.testing.assert_allclose(sweep.scores(0.0), ra.predict(feeds).scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sweep.scores(1.0), rb.predict(feeds).scores, rtol=1e-4, atol=1e-4)


def test_barrier_of_a_convex_curve_is_zero():
    curve = [{"alpha": a, "loss": (a - 0.5) ** 2} for a in np.linspace(0, 1, 11)]
    assert barrier_of(curve) == 0.0
    bump = [{"alpha": a, "loss": 1.0 - (2 * a - 1) ** 2} for a in np.linspace(0, 1, 11)]
    assert barrier_of(bump) == pytest.approx(1.0)


@pytest.mark.parametrize("dtypes", [("f2", "f4"), ("f4", "f2"), ("f2", "f2")])
@pytest.mark.parametrize("transposed", [False, True])
def test_half_precision_endpoints_blend_as_if_widened_first(dtypes, transposed, monkeypatch):
    """float16 endpoints (views of a file) are widened chunk by chunk as they are blended, also
    when read transposed; the result is bit for bit that of float32 endpoints."""
    import onnx_lineage.analyses.interpolation as interpolation
    monkeypatch.setattr(interpolation, "CHUNK", 256)  # many chunks
    rng = np.random.default_rng(4)
    a, b = (rng.normal(size=(70, 130)).astype(d) for d in dtypes)
    if transposed:
        a, b = np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T
    out, expected = np.empty((70, 130), np.float32), np.empty((70, 130), np.float32)
    interpolation.blend_into(a, b, 0.6, out)
    interpolation.blend_into(a.astype(np.float32), b.astype(np.float32), 0.6, expected)
    np.testing.assert_array_equal(out, expected)
