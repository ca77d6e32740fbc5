"""Graphs as onnxruntime's optimizer and quantizer save them: fused com.microsoft layers, a bias
added after the product is re-quantized."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.analyses.determination import determine
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.topology import links
from tests.conftest import fixture_path


def _optimised(name: str, tmp_path) -> str:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / f"{name}_optimised.onnx")
    ort.InferenceSession(str(fixture_path(name)), so, providers=["CPUExecutionProvider"])
    return so.optimized_model_filepath


@pytest.mark.parametrize("name,fused", [("torch_cnn_bn", "FusedConv"),
                                        ("torch_mlp_legacy", "FusedGemm")])
def test_fused_layers_are_read_with_their_activation(tmp_path, name, fused):
    path = _optimised(name, tmp_path)
    model = onnx.load(path)
    layers = extract_layers(model)
    assert [x.op for x in layers][:2] == [fused, fused]
    assert [x.activation for x in layers][:2] == ["Relu", "Relu"]
    chain = links(model, layers)
    assert chain[0].next == 1 and chain[1].next == 2 and chain[0].homogeneous
    r = determine(str(fixture_path(name)), path, copies=0)
    assert r.verdict == "related" and r.test("unit_order").p_value < 1e-10


def test_a_bias_added_after_requantizing_the_product_is_the_layers():
    """Static QDQ: MatMul -> QuantizeLinear -> DequantizeLinear -> Add(bias) -> Relu -> MatMul."""
    rng = np.random.default_rng(0)
    t = {"w0": rng.normal(size=(6, 8)), "b0": rng.normal(size=8), "w1": rng.normal(size=(8, 3)),
         "s": np.array(0.05), "z": np.array(0, np.int8)}
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["m"]),
             helper.make_node("QuantizeLinear", ["m", "s", "z"], ["mq"]),
             helper.make_node("DequantizeLinear", ["mq", "s", "z"], ["md"]),
             helper.make_node("Add", ["md", "b0"], ["h"]),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("MatMul", ["a", "w1"], ["y"])]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(np.asarray(v, np.int8 if k == "z" else np.float32), k)
         for k, v in t.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    layers = extract_layers(model)
    assert "bias" in layers[0].params and layers[0].output == "h"
    assert links(model, layers)[0].next == 1


def test_shapes_are_inferred_through_fused_layers(tmp_path):
    # onnx's shape inference knows no com.microsoft op: every shape after a FusedConv was lost,
    # and with them the layout of the flatten before the classifier
    from onnx_lineage.model.ops import dims_of
    model = onnx.load(_optimised("torch_cnn_bn", tmp_path))
    fused = [n for n in model.graph.node if n.op_type == "FusedConv"]
    dims = dims_of(model)
    assert fused and all(dims.get(n.output[0]) and dims[n.output[0]][1] is not None
                         for n in fused)
    assert all(dims.get(o.name) for o in model.graph.output)
