"""The same-values test: copies in any storage format are related, with no symmetry class needed;
independent models and convex ones are not accused."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy.stats import poisson

from onnx_lineage.analyses.determination import determine
from onnx_lineage.evidence.same_values import _log_tail
from tests.conftest import fixture_path

SIZES = (64, 96, 96, 10)


def cumsum_mlp(seed: int, store: str = "fp32", noise: float = 0.0) -> onnx.ModelProto:
    """``Gemm -> CumSum over the units -> Celu`` MLP: the running sum mixes the units, so no
    symmetry class is found (by design of this test).

    ``store``: ``fp32``; ``fp16`` (float16 initializers cast to float); ``qdq`` (int8 weights,
    one scale per tensor, through DequantizeLinear). ``noise`` moves every value."""
    rng, jitter = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    nodes, prev = [], "x"
    inits = [numpy_helper.from_array(np.array(1, np.int64), "unit_axis")]
    for k, (i, o) in enumerate(zip(SIZES, SIZES[1:])):
        w = (rng.normal(size=(o, i)) / np.sqrt(i)).astype(np.float32)
        b = (0.1 * rng.normal(size=o)).astype(np.float32)
        w += (noise * w.std() * jitter.normal(size=w.shape)).astype(np.float32)
        b += (noise * b.std() * jitter.normal(size=b.shape)).astype(np.float32)
        if store == "fp16":
            for name, v in ((f"w{k}", w), (f"b{k}", b)):
                inits.append(numpy_helper.from_array(v.astype(np.float16), name + "_half"))
                nodes.append(helper.make_node("Cast", [name + "_half"], [name],
                                              to=TensorProto.FLOAT))
        elif store == "qdq":
            scale = np.float32(np.abs(w).max() / 127)
            q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            inits += [numpy_helper.from_array(q, "w_q%d" % k),
                      numpy_helper.from_array(np.array(scale, np.float32), "w_s%d" % k),
                      numpy_helper.from_array(np.array(0, np.int8), "w_z%d" % k),
                      numpy_helper.from_array(b, f"b{k}")]
            nodes.append(helper.make_node("DequantizeLinear", ["w_q%d" % k, "w_s%d" % k,
                                                               "w_z%d" % k], [f"w{k}"]))
        else:
            inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}")]
        out = "logits" if k == len(SIZES) - 2 else f"h{k}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{k}", f"b{k}"], [out], transB=1))
        if out != "logits":
            nodes.append(helper.make_node("CumSum", [out, "unit_axis"], [f"s{k}"]))
            nodes.append(helper.make_node("Celu", [f"s{k}"], [f"a{k}"]))
            prev = f"a{k}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", SIZES[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", SIZES[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _determine(tmp_path, a: onnx.ModelProto, b: onnx.ModelProto):
    pa, pb = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(a, pa)
    onnx.save(b, pb)
    r = determine(str(pa), str(pb), copies=0)
    return r, r.test("same_values")


@pytest.mark.parametrize("store", ["fp32", "fp16", "qdq"])
def test_a_copy_in_any_storage_is_related_by_its_values_alone(tmp_path, store):
    r, t = _determine(tmp_path, cumsum_mlp(0), cumsum_mlp(0, store))
    assert r.test("unit_order").p_value is None  # no class: only the values can tell
    assert r.verdict == "related" and t.p_value < 1e-100 and t.power
    assert r.shared_layers == [0, 1, 2]
    assert all(c.agree > 0.99 * c.compared for c in t.classes)


def test_independent_and_fully_fine_tuned_models_share_no_values(tmp_path):
    for b in (cumsum_mlp(1), cumsum_mlp(0, noise=0.2), cumsum_mlp(1, "fp16")):
        r, t = _determine(tmp_path, cumsum_mlp(0), b)
        assert t.p_value == 1.0 and t.power
        assert r.verdict == "undetermined" and "nor do they share trained values" in r.reason


def test_a_convex_model_is_not_judged_by_its_values():
    r = determine(fixture_path("sklearn_logreg"), fixture_path("sklearn_logreg"), copies=0)
    t = r.test("same_values")
    assert t.p_value is None and "convex" in t.reason and r.verdict == "undetermined"


@pytest.mark.parametrize("k,mean", [(3, 0.5), (10, 2.0), (40, 12.5), (200, 150.0)])
def test_the_chernoff_bound_is_above_the_poisson_tail(k, mean):
    assert _log_tail(k, mean) >= math.log(poisson.sf(k - 1, mean))
    assert _log_tail(k, mean) < 0 and _log_tail(5, 5.0) == 0.0


def test_a_layer_equal_to_an_unpaired_layer_of_a_is_found():
    """Depth-changed models are paired in order with gaps and can pair a branch of A with the
    other branch of B; a B layer equal to an A layer it was not paired with still counts."""
    from types import SimpleNamespace

    from onnx_lineage.evidence.same_values import _unpaired
    from onnx_lineage.model.parameters import extract_layers
    a = {x.index: x for x in extract_layers(cumsum_mlp(0))}
    b = {x.index: x for x in extract_layers(cumsum_mlp(0, "fp16"))}
    wrong = SimpleNamespace(pairs=[{"a": 0, "b": 0}], excluded=[])  # layers 1, 2 left unpaired
    rows, candidates = _unpaired(wrong, a, b)
    assert candidates == 2  # one of each shape: (96x96, 96x96) and (10x96, 10x96)
    found = {(r["layers"][0], r["b"]) for r in rows if r["log_p"] < -1000}
    assert found == {(1, 1), (2, 2)}
    independent = {x.index: x for x in extract_layers(cumsum_mlp(1))}
    assert _unpaired(wrong, a, independent)[0] == []


def _small_blocks(monkeypatch):
    """The same-values test's reading sizes scaled down 256-fold (a real 7B tensor's 16M values
    would hold a gigabyte in the test process)."""
    from onnx_lineage.evidence import same_values as sv
    monkeypatch.setattr(sv, "BLOCKED_FROM", 1 << 16)
    monkeypatch.setattr(sv, "MAX_POSITIONS", 1 << 10)
    monkeypatch.setattr(sv, "BLOCK", 8)
    return sv


def test_a_huge_tensor_is_read_in_runs_that_leave_most_of_its_pages_unread(monkeypatch):
    """From BLOCKED_FROM values on, the positions are runs of BLOCK values at evenly spaced
    starts (a page of float16 each) instead of a stride that touches every page; the count is
    the same, the first run starts the tensor and the last one ends it."""
    sv = _small_blocks(monkeypatch)
    x = np.arange(sv.BLOCKED_FROM + 12345, dtype=np.float64)  # every index exact
    got = sv._positions(x)
    runs = sv.MAX_POSITIONS // sv.BLOCK
    assert got.dtype == np.float64 and got.size == runs * sv.BLOCK
    starts = got[::sv.BLOCK]
    assert starts[0] == 0 and got[-1] == x[-1]
    assert np.all(np.diff(got.reshape(runs, sv.BLOCK), axis=1) == 1)  # each run contiguous
    gaps = np.diff(starts)
    assert gaps.min() >= sv.BLOCK and gaps.max() - gaps.min() <= 1  # evenly spaced, apart
    small = np.arange(sv.MAX_POSITIONS * 3, dtype=np.float32)
    np.testing.assert_array_equal(sv._positions(small), small[::3])  # below: the stride


def test_a_huge_weight_stored_transposed_is_read_along_its_memory_in_both_models(monkeypatch):
    """A MatMul weight read transposed (canonical ``(out, in)`` over a stored ``(in, out)``)
    takes its runs along the stored rows, and B's values are read at the same canonical
    positions whatever B's own layout."""
    sv = _small_blocks(monkeypatch)
    stored = np.arange(sv.BLOCKED_FROM + 256, dtype=np.float64).reshape(-1, 256)
    canonical = stored.T
    assert sv._memory_transposed(canonical)
    got = sv._positions(canonical, True)
    np.testing.assert_array_equal(got, sv._positions(stored))  # the stored rows' runs
    np.testing.assert_array_equal(sv._positions(np.ascontiguousarray(canonical), True), got)
