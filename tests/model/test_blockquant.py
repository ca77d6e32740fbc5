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


def test_a_4bit_export_of_a_float_model_pairs_with_it_by_its_values(tmp_path):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from onnx_lineage.analyses.determination import determine
    rng = np.random.default_rng(0)
    t = {"w0": rng.normal(size=(64, 96)) / 8, "w1": rng.normal(size=(96, 64)) / 10,
         "w2": rng.normal(size=(64, 10)) / 8}
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"]), helper.make_node("Relu", ["h0"], ["a0"]),
             helper.make_node("MatMul", ["a0", "w1"], ["h1"]), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("MatMul", ["a1", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in t.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    quantizer = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=True)
    quantizer.process()
    onnx.save(model, tmp_path / "float.onnx")
    onnx.save(quantizer.model.model, tmp_path / "int4.onnx")
    layers = extract_layers(quantizer.model.model)
    assert [x.op for x in layers] == ["MatMulNBits"] * 3
    for x, w in zip(layers, t.values()):
        # rounding to the nearest level, the top of a symmetric range clipped by one level
        np.testing.assert_allclose(x.weight, w.T, atol=x.step + 1e-6)
    r = determine(str(tmp_path / "float.onnx"), str(tmp_path / "int4.onnx"), copies=0)
    assert r.verdict == "related" and r.test("unit_order").p_value < 1e-10
    assert r.test("same_values").p_value < 1e-100
