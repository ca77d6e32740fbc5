"""MatMulNBits weights read as onnxruntime computes them, and paired with their float parent."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.model.blockquant import dequantize_nbits
from onnx_lineage.model.parameters import extract_layers

K, N, BLOCK = 80, 24, 32  # K not a multiple of the block: the last block is padded


def _nbits_model(bits: int, zero: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    blocks = -(-K // BLOCK)
    packed = rng.integers(0, 256, size=(N, blocks, BLOCK * bits // 8), dtype=np.uint8)
    scales = rng.uniform(0.01, 0.1, size=N * blocks).astype(np.float32)
    inits = [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "scales")]
    inputs = ["A", "B", "scales"]
    zp = None
    if zero == "packed":
        zp = rng.integers(0, 256, size=N * (-(-blocks * bits // 8)), dtype=np.uint8)
    elif zero == "float":
        zp = rng.uniform(0, 2 ** bits - 1, size=N * blocks).astype(np.float32)
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, "zp"))
        inputs.append("zp")
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft", K=K, N=N,
                            bits=bits, block_size=BLOCK)
    graph = helper.make_graph(
        [node], "nbits", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["m", K])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["m", N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model, packed, scales, zp


@pytest.mark.parametrize("bits,zero", [(4, "none"), (4, "packed"), (8, "none"), (8, "packed"),
                                       (4, "float")])
def test_the_weight_is_what_onnxruntime_multiplies_by(bits, zero):
    model, packed, scales, zp = _nbits_model(bits, zero)
    try:
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # pragma: no cover - an onnxruntime without this variant
        pytest.skip(f"onnxruntime cannot run this MatMulNBits variant: {exc}")
    computed = session.run(None, {"A": np.eye(K, dtype=np.float32)})[0]  # = W, (K, N)
    ours, _ = dequantize_nbits(packed, scales, zp, K, N, bits, BLOCK)
    np.testing.assert_allclose(ours, computed.T, rtol=1e-5, atol=1e-6)
    (layer,) = extract_layers(model)
    assert layer.kind == "dense" and layer.weight.shape == (N, K) and layer.quant == f"int{bits}"


def test_act_order_takes_each_values_block_from_g_idx():
    rng = np.random.default_rng(1)
    packed = rng.integers(0, 256, size=(2, 2, 16), dtype=np.uint8)
    scales = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    g_idx = np.array([1, 0] * 16, np.int32)
    w, steps = dequantize_nbits(packed, scales, None, 32, 2, 4, 16, g_idx)
    plain, _ = dequantize_nbits(packed, scales, None, 32, 2, 4, 16)
    np.testing.assert_array_equal(steps, scales.reshape(2, 2)[:, g_idx])
    q = plain / np.repeat(scales.reshape(2, 2), 16, axis=1)  # q - 8 of every value
    expected = q * scales.reshape(2, 2)[:, g_idx]
    np.testing.assert_allclose(w, expected, rtol=1e-6)


def _float_and_4bit(nodes: list, weights: dict, outputs: int, tmp_path) -> onnx.ModelProto:
    """A float model of ``nodes`` and ``weights`` (input ``x`` of 64 features, output ``y`` of
    ``outputs``) saved as float.onnx, then onnxruntime's 4-bit export of it (blocks of 32,
    symmetric) as int4.onnx; the 4-bit model. The quantizer rewrites the model it is given in
    place, so the float file is written first."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    graph = helper.make_graph(
        nodes, "model", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", outputs])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "float.onnx")
    quantizer = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=True)
    quantizer.process()
    onnx.save(quantizer.model.model, tmp_path / "int4.onnx")
    return quantizer.model.model


def test_a_4bit_export_of_a_float_model_pairs_with_it_by_its_values(tmp_path):
    from onnx_lineage.analyses.determination import determine
    rng = np.random.default_rng(0)
    t = {"w0": rng.normal(size=(64, 96)) / 8, "w1": rng.normal(size=(96, 64)) / 10,
         "w2": rng.normal(size=(64, 10)) / 8}
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"]), helper.make_node("Relu", ["h0"], ["a0"]),
             helper.make_node("MatMul", ["a0", "w1"], ["h1"]), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("MatMul", ["a1", "w2"], ["y"])]
    int4 = _float_and_4bit(nodes, t, 10, tmp_path)
    assert [n.op_type for n in onnx.load(tmp_path / "float.onnx").graph.node].count("MatMul") == 3
    layers = extract_layers(int4)
    assert [x.op for x in layers] == ["MatMulNBits"] * 3
    for x, w in zip(layers, t.values()):
        # rounding to the nearest level, the top of a symmetric range clipped by one level
        np.testing.assert_allclose(x.weight, w.T, atol=x.step + 1e-6)
    r = determine(str(tmp_path / "float.onnx"), str(tmp_path / "int4.onnx"), copies=0)
    assert r.verdict == "related" and r.test("unit_order").p_value < 1e-10
    assert r.test("same_values").p_value < 1e-100


def test_a_4bit_export_keeps_its_gated_units_found(tmp_path):
    # shape inference does not know MatMulNBits: without its output's shape the SwiGLU units,
    # read by the gate's Sigmoid and Mul, were no class in the 4-bit file (a decoder of
    # llm_family.py matched by its values alone)
    from onnx_lineage.evidence.function import gated_classes
    from onnx_lineage.matching import match
    from onnx_lineage.model.ops import dims_of
    rng = np.random.default_rng(0)
    t = {"g": rng.normal(size=(64, 96)) / 8, "u": rng.normal(size=(64, 96)) / 8,
         "d": rng.normal(size=(96, 10)) / 10}
    nodes = [helper.make_node("MatMul", ["x", "g"], ["hg"]),
             helper.make_node("MatMul", ["x", "u"], ["hu"]),
             helper.make_node("Sigmoid", ["hg"], ["s"]), helper.make_node("Mul", ["hg", "s"], ["a"]),
             helper.make_node("Mul", ["a", "hu"], ["h"]), helper.make_node("MatMul", ["h", "d"], ["y"])]
    int4 = _float_and_4bit(nodes, t, 10, tmp_path)
    assert dims_of(int4).get("hg") == [None, 96]
    m = match(tmp_path / "float.onnx", tmp_path / "int4.onnx")
    assert len(gated_classes(m)) == 1 and not m.limits


# -- GatherBlockQuantized and DequantizeLinear by blocks --------------------------------------

V, D = 12, 40  # D not a multiple of the block: the last block of each row is short


def _session(model):
    try:
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # pragma: no cover - an onnxruntime without this variant
        pytest.skip(f"onnxruntime cannot run this variant: {exc}")


def _model(nodes, inits, inputs, opset=21):
    graph = helper.make_graph(nodes, "q", inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def _values(rng, type_name: str, shape) -> np.ndarray:
    """Random stored values of an ONNX element type, as numpy_helper holds them."""
    dtype = helper.tensor_dtype_to_np_dtype(getattr(TensorProto, type_name))
    if type_name.startswith("FLOAT8"):
        return rng.normal(size=shape).astype(dtype)
    lo, hi = {"INT4": (-8, 8), "UINT4": (0, 16), "INT8": (-128, 128), "UINT8": (0, 256)}[type_name]
    return rng.integers(lo, hi, size=shape).astype(dtype)


def _gather_model(stored: str, bits: int = 4, zero: bool = False, quantize_axis: int = 1,
                  block: int = 16, seed: int = 0, **attrs):
    """A GatherBlockQuantized of a (V, D) table: ``stored`` ``"UINT8"`` packs ``bits``-bit values
    along each row; ``"INT4"``/``"UINT4"``/float8 hold them in the table's shape."""
    rng = np.random.default_rng(seed)
    rows = V if quantize_axis == 1 else V * 4
    blocks = -(-(D if quantize_axis == 1 else rows) // block) if block else 1
    scales = rng.uniform(0.01, 0.1, size=(rows, blocks) if quantize_axis == 1 else (blocks, D))
    if stored == "UINT8":
        data = rng.integers(0, 256, size=(rows, D * bits // 8), dtype=np.uint8)
        zp = rng.integers(0, 256, size=(rows, -(-blocks * bits // 8)), dtype=np.uint8)
    else:
        data = _values(rng, stored, (rows, D))
        zp = _values(rng, stored, scales.shape) if zero else None
    inits = [numpy_helper.from_array(data, "data"),
             numpy_helper.from_array(scales.astype(np.float32), "scales")]
    inputs = ["data", "ids", "scales"]
    if zero:
        inits.append(numpy_helper.from_array(zp, "zp"))
        inputs.append("zp")
    node = helper.make_node("GatherBlockQuantized", inputs, ["Y"], domain="com.microsoft",
                            block_size=block, quantize_axis=quantize_axis, bits=bits, **attrs)
    return _model([node], inits, [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])])


@pytest.mark.parametrize("stored,bits,zero,axis", [
    ("UINT8", 4, False, 1), ("UINT8", 4, True, 1), ("UINT8", 8, True, 1), ("UINT8", 2, True, 1),
    ("INT4", 4, False, 1), ("INT4", 4, True, 1), ("UINT4", 4, True, 1), ("INT4", 4, True, 0),
    ("FLOAT8E4M3FN", 4, False, 1), ("FLOAT8E5M2", 4, False, 1)])
def test_a_block_quantized_table_is_what_onnxruntime_gathers(stored, bits, zero, axis):
    model = _gather_model(stored, bits, zero, axis)
    rows = V if axis == 1 else V * 4
    table = _session(model).run(None, {"ids": np.arange(rows, dtype=np.int64)})[0]
    (layer,) = extract_layers(model)
    assert layer.kind == "embedding" and layer.op == "GatherBlockQuantized"
    np.testing.assert_allclose(layer.weight, table.T, rtol=1e-6, atol=1e-7)
    assert layer.steps.shape == layer.weight.shape and layer.step == layer.steps.max()
    assert layer.quant == (f"int{bits}" if stored in ("UINT8", "INT4", "UINT4")
                           else {"FLOAT8E4M3FN": "fp8e4m3fn", "FLOAT8E5M2": "fp8e5m2"}[stored])
    assert not layer.sites["weight"].writable


def test_a_float8_table_takes_one_scale_per_row_over_the_whole_row():
    """block_size 0 with float8 data: one block over the quantized axis."""
    model = _gather_model("FLOAT8E4M3FN", block=0)
    scales = numpy_helper.from_array(
        np.random.default_rng(3).uniform(0.5, 2, size=(V, 1)).astype(np.float32), "scales")
    model.graph.initializer[1].CopyFrom(scales)
    table = _session(model).run(None, {"ids": np.arange(V, dtype=np.int64)})[0]
    (layer,) = extract_layers(model)
    np.testing.assert_allclose(layer.weight, table.T, rtol=1e-6)


@pytest.mark.parametrize("stored", ["INT4", "UINT4", "INT8", "UINT8"])
@pytest.mark.parametrize("axis,zero", [(0, True), (0, False), (1, True)])
def test_a_weight_dequantized_by_blocks_is_what_onnxruntime_multiplies_by(stored, axis, zero):
    rng = np.random.default_rng(1)
    q = _values(rng, stored, (K, N))
    shape = (-(-K // 32), N) if axis == 0 else (K, -(-N // 16))
    scales = rng.uniform(0.01, 0.1, size=shape).astype(np.float32)
    inits = [numpy_helper.from_array(q, "q"), numpy_helper.from_array(scales, "s")]
    if zero:
        inits.append(numpy_helper.from_array(_values(rng, stored, shape), "z"))
    dq = helper.make_node("DequantizeLinear", ["q", "s"] + (["z"] if zero else []), ["w"],
                          axis=axis, block_size=32 if axis == 0 else 16)
    model = _model([dq, helper.make_node("MatMul", ["A", "w"], ["Y"])], inits,
                   [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["m", K])])
    computed = _session(model).run(None, {"A": np.eye(K, dtype=np.float32)})[0]  # = W, (K, N)
    (layer,) = extract_layers(model)
    # onnxruntime rounds (q - z) * s its own way: within a few float32 steps of the largest value
    np.testing.assert_allclose(layer.weight, computed.T, atol=4e-7 * np.abs(computed).max())
    assert layer.quant == f"qdq {stored.lower()} blocked"
    block = 32 if axis == 0 else 16
    expected = np.repeat(scales, block, axis=axis)[:K, :N]
    np.testing.assert_array_equal(layer.steps, expected.T)


@pytest.mark.parametrize("change,message", [
    ({"block_size": 24}, "block_size 24"), ({"bits": 3}, "3-bit"),
    ({"quantize_axis": 0}, "last axis"), ({"quantize_axis": 5}, "outside"),
    ({"scales": (V, 2)}, "do not give blocks")])
def test_bad_block_quantization_attributes_are_one_line_model_errors(change, message):
    from onnx_lineage.errors import ModelError
    attrs = {"block" if k == "block_size" else k: v for k, v in change.items() if k != "scales"}
    model = _gather_model("UINT8", **attrs)
    if "scales" in change:
        model.graph.initializer[1].CopyFrom(numpy_helper.from_array(
            np.ones(change["scales"], np.float32), "scales"))
    with pytest.raises(ModelError, match=message) as info:
        extract_layers(model)
    assert "\n" not in str(info.value)


def test_an_inconsistent_blocked_dequantization_is_a_model_error():
    from onnx_lineage.errors import ModelError
    q = numpy_helper.from_array(_values(np.random.default_rng(0), "INT4", (K, N)), "q")
    s = numpy_helper.from_array(np.ones((2, N), np.float32), "s")  # 80 / 32 is 3 blocks
    dq = helper.make_node("DequantizeLinear", ["q", "s"], ["w"], axis=0, block_size=32)
    model = _model([dq, helper.make_node("MatMul", ["A", "w"], ["Y"])], [q, s],
                   [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["m", K])])
    with pytest.raises(ModelError, match="do not give blocks of 32") as info:
        extract_layers(model)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt,symmetric", [("QOperator", True), ("QOperator", False),
                                           ("QDQ", True), ("QDQ", False)])
def test_onnxruntimes_4bit_export_with_its_embedding_pairs_with_the_float_model(tmp_path, fmt,
                                                                                symmetric):
    """QOperator: GatherBlockQuantized and MatMulNBits; QDQ: DequantizeLinear by blocks before
    each MatMul (the embedding stays float). An independent float model is not accused."""
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from onnx_lineage.analyses.determination import determine
    from tests.model.float_models import embedding_mlp
    model, weights = embedding_mlp(0)
    onnx.save(model, tmp_path / "float.onnx")
    onnx.save(embedding_mlp(7)[0], tmp_path / "other.onnx")
    quantizer = MatMulNBitsQuantizer(
        model, block_size=32, is_symmetric=symmetric, quant_format=QuantFormat[fmt],
        op_types_to_quantize=("MatMul", "Gather") if fmt == "QOperator" else ("MatMul",))
    quantizer.process()
    onnx.save(quantizer.model.model, tmp_path / "int4.onnx")
    layers = extract_layers(quantizer.model.model)
    names = {"QOperator": "int4", "QDQ": f"qdq {'int4' if symmetric else 'uint4'} blocked"}
    assert [x.quant for x in layers][1:] == [names[fmt]] * 3
    assert layers[0].op == ("GatherBlockQuantized" if fmt == "QOperator" else "Gather")
    for x, w in zip(layers, weights.values()):
        # rounding to the nearest level; a symmetric range's top clipped by one level
        steps = x.steps if x.steps is not None else 0.0
        assert np.all(np.abs(x.weight - w.T) <= steps * (1.0 if symmetric else 0.5) + 1e-6)
    r = determine(str(tmp_path / "float.onnx"), str(tmp_path / "int4.onnx"), copies=0)
    assert r.verdict == "related" and r.test("unit_order").p_value < 1e-10
    values = r.test("same_values")
    assert values.p_value < 1e-100
    assert all(row.agree > 0.95 * row.compared for row in values.classes if row.name != "layer 0"
               or fmt == "QOperator")
    other = determine(str(tmp_path / "other.onnx"), str(tmp_path / "int4.onnx"), copies=0)
    assert other.verdict == "unrelated" and other.test("same_values").p_value > 0.01


def test_inspect_names_each_block_quantization(tmp_path):
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from onnx_lineage.model.inspect import inspect_model
    from tests.model.float_models import embedding_mlp
    seen = {}
    for fmt in ("QOperator", "QDQ"):
        quantizer = MatMulNBitsQuantizer(
            embedding_mlp(0)[0], block_size=32, is_symmetric=False,
            quant_format=QuantFormat[fmt],
            op_types_to_quantize=("MatMul", "Gather") if fmt == "QOperator" else ("MatMul",))
        quantizer.process()
        onnx.save(quantizer.model.model, tmp_path / f"{fmt}.onnx")
        r = inspect_model(str(tmp_path / f"{fmt}.onnx"), device="cpu")
        seen[fmt] = r.quantization
        assert [x["quantization"] for x in r.layers][1:] == [r.quantization[-1]] * 3
    assert seen == {"QOperator": ["int4"], "QDQ": ["qdq uint4 blocked"]}
