"""Unit axes followed by op semantics: activations outside the old lists, clamps against
constants, padding and resizing of other axes, a transpose that moves channels next to the
flatten, and what still stops them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.matching import match
from onnx_lineage.model.graph import GraphIndex
from onnx_lineage.model.ops import dims_of, passage
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.topology import links

T = 16  # time steps


def pitch_net(seed: int = 0, perm=None, act: str = "Celu", pad_axis: int = 2) -> onnx.ModelProto:
    """A CREPE-like net on ``(N, 1, T, 1)``: ``Conv (3, 1) -> act -> Max(x, 0.1) -> Pad(time)
    -> Conv (3, 1) -> act -> Transpose (0, 2, 1, 3) -> Reshape (N, -1) -> Gemm``.

    ``perm`` (8,) reorders the first conv's channels (with the second conv's inputs): the same
    function."""
    rng = np.random.default_rng(seed)
    p = np.arange(8) if perm is None else np.asarray(perm)
    w0 = rng.normal(size=(8, 1, 3, 1)).astype(np.float32)[p]
    b0 = rng.normal(size=8).astype(np.float32)[p]
    w1 = (rng.normal(size=(6, 8, 3, 1)) / 5).astype(np.float32)[:, p]
    b1 = rng.normal(size=6).astype(np.float32)
    fc = (rng.normal(size=(4, 6 * T)) / 10).astype(np.float32)
    pads = [0, 0, 0, 0, 0, 0, 0, 0]
    pads[pad_axis], pads[pad_axis + 4] = 1, 1
    inits = [numpy_helper.from_array(v, n) for n, v in (
        ("w0", w0), ("b0", b0), ("w1", w1), ("b1", b1), ("fc", fc),
        ("floor", np.array(0.1, np.float32)), ("pads", np.array(pads, np.int64)),
        ("shape", np.array([0, -1], np.int64)))]
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 0, 1, 0]),
        helper.make_node(act, ["c0"], ["a0"]),
        helper.make_node("Max", ["a0", "floor"], ["m0"]),
        helper.make_node("Pad", ["m0", "pads"], ["p0"]),
        helper.make_node("Conv", ["p0", "w1", "b1"], ["c1"]),
        helper.make_node(act, ["c1"], ["a1"]),
        helper.make_node("Transpose", ["a1"], ["t1"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["t1", "shape"], ["f1"]),
        helper.make_node("Gemm", ["f1", "fc"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "pitch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, T, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_units_pass_activations_clamps_time_padding_and_a_transpose_before_the_flatten():
    model = pitch_net()
    layers = extract_layers(model)
    chain = links(model, layers)
    assert chain[0].next == 1 and chain[0].ops == ("Celu", "Max", "Pad")
    assert chain[1].next == 2 and chain[1].channels_last and chain[1].spatial == T
    assert not chain[0].homogeneous  # CELU is not positively homogeneous


def test_padding_the_channels_stops_the_units():
    model = pitch_net(pad_axis=1)
    chain = links(model, extract_layers(model))
    assert chain[0].next is None and "Pad of its unit axis" in chain[0].reason


def test_a_permuted_copy_through_these_ops_is_put_back_in_order(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(pitch_net(0), a)
    onnx.save(pitch_net(0, perm=np.random.default_rng(1).permutation(8)), b)
    m = match(str(a), str(b))
    assert not m.limits and all(p["cosine"] > 0.9999 for p in m.pairs)
    assert any("permutation" in p["transforms"] for p in m.pairs)


def _node_model(op: str, other: np.ndarray | None, **attrs) -> tuple:
    inputs = ["h"] + (["c"] if other is not None else [])
    inits = [] if other is None else [numpy_helper.from_array(other.astype(np.float32), "c")]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["out"], **attrs)], "g",
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["n", 8, 5, 5])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return GraphIndex(model.graph), model.graph.node[0], dims_of(model)


@pytest.mark.parametrize("op,other,keeps,homogeneous", [
    ("Min", np.array(6.0), True, False),
    ("Max", np.zeros((1, 1, 1)), True, True),
    ("Mul", np.full((1, 1, 5), 2.0), True, True),
    ("Add", np.ones((8, 1, 1)), False, False),  # a constant per channel
    ("Softsign", None, True, False),
    ("ReduceSum", None, False, False),  # over every axis
])
def test_passage_of_elementwise_ops(op, other, keeps, homogeneous):
    g, node, dims = _node_model(op, other)
    how = passage(g, node, "h", 1, dims)
    assert how.keeps is keeps and how.homogeneous is homogeneous


def test_an_unknown_op_is_named():
    g, node, dims = _node_model("LRN", None, size=3)
    how = passage(g, node, "h", 1, dims)
    assert not how.keeps and how.reason == "passes through LRN"
