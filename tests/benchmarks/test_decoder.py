"""benchmarks/decoder.py's 4-bit writer: MatMulNBits blocks that onnxruntime runs as the weight they
stand for, and a 4-bit build that holds the float build's values (the 7B issue's 4-bit export,
written layer by layer instead of through onnxruntime's quantizer, which loads the whole model)."""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from decoder import BLOCK, Config, build, file_bytes, quantize_blocks  # noqa: E402

from onnx_lineage.evidence import data_free, decide  # noqa: E402
from onnx_lineage.matching import match  # noqa: E402
from onnx_lineage.model.blockquant import dequantize_nbits  # noqa: E402

TINY = Config(vocab=100, width=64, layers=2, heads=4, kv_heads=2, ff=96)


def test_blocks_hold_each_value_within_half_a_step_including_a_ragged_last_block():
    w = np.random.default_rng(1).normal(size=(3 * BLOCK + 5, 40)).astype(np.float32)
    packed, scales, zeros = quantize_blocks(w)
    k, n = w.shape
    assert packed.shape == (n, 4, BLOCK // 2) and scales.shape == (n * 4,)
    weight, steps = dequantize_nbits(packed, scales, zeros, k, n, 4, BLOCK)
    assert np.all(np.abs(weight - w.T) <= 0.5 * steps + 1e-6)


def _matmul(w: np.ndarray) -> onnx.ModelProto:
    """``y = x @ w``, ``w`` a float32 initializer."""
    k, n = w.shape
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])], [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(w, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("k, n", [(64, 48), (96, 40), (256, 344)])
def test_the_blocks_are_the_bytes_onnxruntimes_quantizer_writes(k, n):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    w = np.random.default_rng(k + n).normal(size=(k, n)).astype(np.float32)
    quantizer = MatMulNBitsQuantizer(_matmul(w), block_size=BLOCK, is_symmetric=False)
    quantizer.process()
    theirs = {t.name: numpy_helper.to_array(t) for t in quantizer.model.model.graph.initializer}
    packed, scales, zeros = quantize_blocks(w)
    assert np.array_equal(theirs["W_Q4"], packed)
    assert np.array_equal(theirs["W_scales"].ravel(), scales)
    assert np.array_equal(theirs["W_zero_points"].ravel(), zeros)


def test_onnxruntime_multiplies_by_the_weight_the_blocks_stand_for():
    k, n = 2 * BLOCK, 24
    w = np.random.default_rng(2).normal(size=(k, n)).astype(np.float32)
    packed, scales, zeros = quantize_blocks(w)
    inits = [numpy_helper.from_array(a, name) for a, name in
             ((packed, "q"), (scales, "scales"), (zeros, "zeros"))]
    node = helper.make_node("MatMulNBits", ["x", "q", "scales", "zeros"], ["y"],
                            domain="com.microsoft", K=k, N=n, bits=4, block_size=BLOCK)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [None, k])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [None, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("com.microsoft", 1)])
    x = np.random.default_rng(3).normal(size=(5, k)).astype(np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    weight, _ = dequantize_nbits(packed, scales, zeros, k, n, 4, BLOCK)
    np.testing.assert_allclose(y, x @ weight.T, rtol=1e-4, atol=1e-4)


def test_a_4bit_build_runs_and_holds_the_float_builds_weights(tmp_path):
    a = build(tmp_path / "a.onnx", TINY, seed=0)
    q = build(tmp_path / "q.onnx", TINY, seed=0, bits=4)
    ops = [n.op_type for n in onnx.load(str(q), load_external_data=False).graph.node]
    assert ops.count("MatMulNBits") == 7 * TINY.layers + 1 and "MatMul" in ops  # attention's
    ids = np.random.default_rng(0).integers(0, TINY.vocab, (4, 8))
    (logits,) = ort.InferenceSession(str(q)).run(None, {"input_ids": ids})
    assert logits.shape == (4, TINY.vocab) and np.all(np.isfinite(logits))
    assert decide(data_free(match(a, q)).tests, 0.01).related is True
    other = build(tmp_path / "c.onnx", TINY, seed=7, bits=4)
    assert decide(data_free(match(a, other)).tests, 0.01).related is not True


def test_the_disk_a_build_needs_is_known_before_it_is_written(tmp_path):
    for bits in (None, 4):
        path = build(tmp_path / f"m{bits}.onnx", TINY, seed=0, bits=bits)
        assert path.with_name(path.name + ".data").stat().st_size == file_bytes(TINY, bits)
