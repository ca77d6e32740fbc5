"""Weights stored in narrow types (float8, bfloat16, int4, uint4) read as float32, as onnxruntime
reads them, each float8 value with its format's step; read in place from a file alike."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.model.blockquant import float_steps
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.parameters import extract_layers

K, N = 128, 64  # 4,096 bytes of int4, 8,192 of float8: read in place from a file
FLOAT8 = {"FLOAT8E4M3FN": "fp8e4m3fn", "FLOAT8E4M3FNUZ": "fp8e4m3fnuz",
          "FLOAT8E5M2": "fp8e5m2", "FLOAT8E5M2FNUZ": "fp8e5m2fnuz"}


def _stored(type_name: str, shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = helper.tensor_dtype_to_np_dtype(getattr(TensorProto, type_name))
    if type_name in ("INT4", "UINT4"):
        lo = -8 if type_name == "INT4" else 0
        return rng.integers(lo, lo + 16, size=shape).astype(dtype)
    return (rng.normal(size=shape) * 2).astype(dtype)


def _matmul_of(type_name: str, how: str, seed: int = 0):
    """``Y = A @ W`` with ``W`` (K, N) stored as ``type_name``, cast to float or dequantized
    with one scale per column."""
    q = numpy_helper.from_array(_stored(type_name, (K, N), seed), "q")
    inits = [q]
    if how == "cast":
        first = helper.make_node("Cast", ["q"], ["w"], to=TensorProto.FLOAT)
    else:
        scales = np.random.default_rng(seed + 1).uniform(0.5, 2, size=N).astype(np.float32)
        inits.append(numpy_helper.from_array(scales, "s"))
        first = helper.make_node("DequantizeLinear", ["q", "s"], ["w"], axis=1)
    graph = helper.make_graph(
        [first, helper.make_node("MatMul", ["A", "w"], ["Y"])], "narrow",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["m", K])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["m", N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


def _computed(model) -> np.ndarray:
    """The weight onnxruntime multiplies by, canonical ``(N, K)``: an identity input."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"A": np.eye(K, dtype=np.float32)})[0].T


@pytest.mark.parametrize("type_name", list(FLOAT8))
@pytest.mark.parametrize("how", ["cast", "dequantize"])
def test_a_float8_weight_is_what_onnxruntime_multiplies_by(type_name, how):
    model = _matmul_of(type_name, how)
    (layer,) = extract_layers(model)
    np.testing.assert_array_equal(layer.weight, _computed(model))
    stored = numpy_helper.to_array(model.graph.initializer[0])
    _, spacing = float_steps(stored)
    scale = 1.0 if how == "cast" else numpy_helper.to_array(model.graph.initializer[1])
    np.testing.assert_allclose(layer.steps, (spacing * scale).T, rtol=1e-7)
    assert layer.step == layer.steps.max()
    assert layer.quant == (FLOAT8[type_name] if how == "cast" else f"qdq {FLOAT8[type_name]}")


def test_a_float8_step_is_the_gap_to_its_neighbours():
    import ml_dtypes
    x = np.array([0.0, 1.0, 1.125, -3.25, 448.0], np.float32).astype(ml_dtypes.float8_e4m3fn)
    _, steps = float_steps(x)
    # 3 mantissa bits: 1 has 0.0625 below and 0.125 above; 448 is the largest finite value
    np.testing.assert_array_equal(steps, [2.0 ** -9, 0.125, 0.125, 0.25, 32.0])


def test_a_bfloat16_weight_is_what_onnxruntime_multiplies_by():
    model = _matmul_of("BFLOAT16", "cast")
    (layer,) = extract_layers(model)
    np.testing.assert_array_equal(layer.weight, _computed(model))
    assert layer.weight.dtype == np.float32 and layer.quant == "bf16"


@pytest.mark.parametrize("type_name", ["INT4", "UINT4"])
def test_an_int4_weight_per_column_is_what_onnxruntime_multiplies_by(type_name):
    model = _matmul_of(type_name, "dequantize")
    (layer,) = extract_layers(model)
    computed = _computed(model)  # onnxruntime's rounding of q * s: within a float32 step or two
    np.testing.assert_allclose(layer.weight, computed, atol=4e-7 * np.abs(computed).max())
    assert layer.quant == f"qdq {type_name.lower()}" and layer.steps is None
    assert layer.step == pytest.approx(numpy_helper.to_array(model.graph.initializer[1]).max())


@pytest.mark.parametrize("type_name,how", [("FLOAT8E4M3FN", "dequantize"), ("FLOAT8E5M2", "cast"),
                                           ("INT4", "dequantize"), ("BFLOAT16", "cast")])
def test_narrow_weights_read_in_place_read_and_run_the_same(tmp_path, type_name, how):
    """Read from the file's bytes, and handed to onnxruntime from them (4-bit values inline,
    bfloat16 and float8 by their bytes)."""
    from onnx_lineage.model.runtime import session
    from onnx_lineage.model.weights import is_mapped
    model = _matmul_of(type_name, how)
    onnx.save(model, tmp_path / "m.onnx")
    loaded = load_model(tmp_path / "m.onnx").proto
    assert is_mapped(loaded.graph.initializer[0])
    (ours,) = extract_layers(loaded)
    (whole,) = extract_layers(model)
    np.testing.assert_array_equal(ours.weight, whole.weight)
    assert ours.quant == whole.quant
    ran = session(loaded).run(None, {"A": np.eye(K, dtype=np.float32)})[0].T
    np.testing.assert_array_equal(ran, _computed(model))


def test_a_float8_export_of_a_float_model_pairs_with_it_by_its_values(tmp_path):
    """Every MatMul weight stored as float8 E4M3FN with one scale per column (its largest value
    at the format's largest, 448), dequantized before its MatMul: related to the float model,
    each value within half its own step."""
    import ml_dtypes

    from onnx_lineage.analyses.determination import determine
    from tests.model.float_models import embedding_mlp
    model, weights = embedding_mlp(0)
    onnx.save(model, tmp_path / "float.onnx")
    graph = model.graph
    for name in ("w0", "w1", "w2"):
        w = weights[name]
        scale = (np.abs(w).max(axis=0) / 448).astype(np.float32)
        q = (w / scale).astype(ml_dtypes.float8_e4m3fn)
        keep = [t for t in graph.initializer if t.name != name]
        del graph.initializer[:]
        graph.initializer.extend(keep + [numpy_helper.from_array(q, f"{name}_q"),
                                         numpy_helper.from_array(scale, f"{name}_s")])
        graph.node.insert(0, helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s"],
                                              [name], axis=1))
    onnx.save(model, tmp_path / "fp8.onnx")
    layers = extract_layers(model)
    assert [x.quant for x in layers] == [None] + ["qdq fp8e4m3fn"] * 3
    for x in layers[1:]:
        w = weights[f"w{x.index - 1}"]
        assert np.all(np.abs(x.weight - w.T) <= 0.5 * x.steps + 1e-7)
    r = determine(str(tmp_path / "float.onnx"), str(tmp_path / "fp8.onnx"), copies=0)
    assert r.verdict == "related" and r.test("unit_order").p_value < 1e-10
    assert r.test("same_values").p_value < 1e-100
