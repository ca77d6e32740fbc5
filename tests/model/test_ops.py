"""Unit axes followed by op semantics: activations outside the old lists, clamps against
constants, padding and resizing of other axes, a transpose that moves channels next to the
flatten, and what still stops them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.matching import match
from onnx_lineage.model.graph import GraphIndex
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.ops import dims_of, passage, same_for_every_unit
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.topology import links
from tests.graphs import branch_graph, if_model

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


def _norm_mlp(seed: int = 0, perm=None, rms: bool = False) -> onnx.ModelProto:
    """``Gemm (12 -> 16) -> LayerNorm or RMSNorm written as ops -> Relu -> Gemm (16 -> 3)``, as
    exporters write a norm they do not fuse; ``perm`` reorders the 16 hidden units (with the
    norm's scale and bias and the second layer's inputs): the same function."""
    rng = np.random.default_rng(seed)
    p = np.arange(16) if perm is None else np.asarray(perm)
    tensors = {"w0": rng.normal(size=(16, 12)).astype(np.float32)[p],
               "b0": rng.normal(size=16).astype(np.float32)[p],
               "gamma": (1 + 0.1 * rng.normal(size=16)).astype(np.float32)[p],
               "beta": (0.1 * rng.normal(size=16)).astype(np.float32)[p],
               "w1": rng.normal(size=(3, 16)).astype(np.float32)[:, p],
               "two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32),
               "last": np.array([-1], np.int64)}
    nodes = [helper.make_node("Gemm", ["x", "w0", "b0"], ["h"], transB=1)]
    if rms:
        nodes += [helper.make_node("Pow", ["h", "two"], ["sq"]),
                  helper.make_node("ReduceMean", ["sq", "last"], ["ms"]),
                  helper.make_node("Add", ["ms", "eps"], ["mse"]),
                  helper.make_node("Sqrt", ["mse"], ["rms"]),
                  helper.make_node("Div", ["h", "rms"], ["n"])]
    else:
        nodes += [helper.make_node("ReduceMean", ["h", "last"], ["mu"]),
                  helper.make_node("Sub", ["h", "mu"], ["d"]),
                  helper.make_node("Pow", ["d", "two"], ["sq"]),
                  helper.make_node("ReduceMean", ["sq", "last"], ["var"]),
                  helper.make_node("Add", ["var", "eps"], ["vare"]),
                  helper.make_node("Sqrt", ["vare"], ["sd"]),
                  helper.make_node("Div", ["d", "sd"], ["n"])]
    nodes += [helper.make_node("Mul", ["n", "gamma"], ["ng"]),
              helper.make_node("Add", ["ng", "beta"], ["nb"]),
              helper.make_node("Relu", ["nb"], ["a"]),
              helper.make_node("Gemm", ["a", "w1"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "norm_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(v, k) for k, v in tensors.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("rms", [False, True])
def test_a_norm_written_as_ops_is_a_layer_the_units_pass(rms):
    model = _norm_mlp(rms=rms)
    layers = extract_layers(model)
    assert [x.kind for x in layers] == ["dense", "layernorm", "dense"]
    norm = layers[1]
    assert norm.op.startswith("RMSNormalization" if rms else "LayerNormalization")
    assert set(norm.params) == {"weight", "bias"} and norm.params["weight"].shape == (16,)
    chain = links(model, layers)
    assert chain[0].next == 2 and chain[0].followers == (1,)


@pytest.mark.parametrize("rms", [False, True])
def test_a_permuted_copy_through_a_norm_written_as_ops_is_put_back(tmp_path, rms):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(_norm_mlp(rms=rms), a)
    onnx.save(_norm_mlp(perm=np.random.default_rng(3).permutation(16), rms=rms), b)
    m = match(str(a), str(b))
    assert all(p["cosine"] > 0.9999 for p in m.pairs) and len(m.pairs) == 3


def _padded_by_shape(pad_axis: int = 2) -> onnx.ModelProto:
    """``Conv -> Pad -> Conv -> Pad -> Conv`` on ``(N, 4, 32)`` whose paddings are computed as
    exporters write "same" padding: from the input's length (``Shape -> Gather -> Div``) and
    through ``Reshape/Transpose`` of a constant (torch's F.pad)."""
    rng = np.random.default_rng(0)
    init = {"w0": rng.normal(size=(8, 4, 3)), "w1": rng.normal(size=(8, 8, 3)),
            "w2": rng.normal(size=(2, 8, 3)), "idx": np.array(2, np.int64),
            "four": np.array(4, np.int64), "zeros": np.zeros(2, np.int64),
            "raw": np.array([0, 0, 0, 0, 1, 1], np.int64), "shp": np.array([3, 2], np.int64),
            "flat": np.array([-1], np.int64)}
    # pads [0, 0, q, 0, 0, q] (time) or [0, q, 0, 0, q, 0] (channels), q = length // 4
    parts = (["z2", "q2", "z2", "q2"] if pad_axis == 2 else ["z1", "q2", "z2", "q2", "z1"])
    init["z1"], init["z2"] = np.zeros(1, np.int64), np.zeros(2, np.int64)
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"]),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "idx"], ["t"]),
        helper.make_node("Div", ["t", "four"], ["q"]),
        helper.make_node("Unsqueeze", ["q", "zeros"], ["q2"], ),
        helper.make_node("Concat", parts, ["pads0"], axis=0),
        helper.make_node("Pad", ["c0", "pads0"], ["p0"]),
        helper.make_node("Relu", ["p0"], ["a0"]),
        helper.make_node("Conv", ["a0", "w1"], ["c1"]),
        helper.make_node("Reshape", ["raw", "shp"], ["r"]),
        helper.make_node("Transpose", ["r"], ["rt"], perm=[1, 0]),
        helper.make_node("Reshape", ["rt", "flat"], ["pads1"]),
        helper.make_node("Pad", ["c1", "pads1"], ["p1"]),
        helper.make_node("Conv", ["p1", "w2"], ["y"]),
    ]
    init["zeros"] = np.array([0], np.int64)
    graph = helper.make_graph(
        nodes, "padded", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, None])],
        [numpy_helper.from_array(np.asarray(v, np.float32 if k[0] == "w" else np.int64), k)
         for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_paddings_computed_from_shapes_are_evaluated_and_shapes_known_after_them():
    model = _padded_by_shape()
    dims = dims_of(model)
    assert dims["p0"] == [None, 8, 46] and dims["p1"] == [None, 8, 46]
    chain = links(model, extract_layers(model))
    assert chain[0].next == 1 and chain[1].next == 2


def test_a_computed_padding_of_the_channels_stops_the_units():
    model = _padded_by_shape(pad_axis=1)
    chain = links(model, extract_layers(model))
    assert chain[0].next is None and "Pad of its unit axis" in chain[0].reason


def test_a_reshape_that_keeps_the_channels_whole_keeps_the_units():
    """``Conv2d (1 -> 6, kernel 1x3)`` on ``(N, 1, 1, 16)`` -> Reshape to ``(N, 6, 14)`` -> Pad
    (time) -> ``Conv1d (6 -> 4)``, as a Conv1D exported through a 2-D convolution is written."""
    rng = np.random.default_rng(0)
    t = {"w0": rng.normal(size=(6, 1, 1, 3)), "w1": rng.normal(size=(4, 6, 3)),
         "shape": np.array([-1, 6, 14]), "pads": np.array([0, 0, 1, 0, 0, 1])}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"]),
             helper.make_node("Reshape", ["c0", "shape"], ["r0"]),
             helper.make_node("Pad", ["r0", "pads"], ["a0"]),
             helper.make_node("Conv", ["a0", "w1"], ["y"])]
    graph = helper.make_graph(
        nodes, "conv1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 14])],
        [numpy_helper.from_array(np.asarray(v, np.int64 if k in ("shape", "pads") else np.float32), k)
         for k, v in t.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    chain = links(model, extract_layers(model))
    assert chain[0].next == 1 and chain[0].spatial == 1 and not chain[0].channels_last


def test_chains_inside_if_branches_are_followed():
    """The shipped voice-activity detector keeps its network in the branches of an If (one per
    sample rate): a chain inside a branch is followed within it."""
    rng = np.random.default_rng(0)

    def branch(name: str) -> onnx.GraphProto:
        return branch_graph(name, [
            helper.make_node("Conv", ["x", f"{name}_w0"], [f"{name}_c0"]),
            helper.make_node("Relu", [f"{name}_c0"], [f"{name}_a0"]),
            helper.make_node("Conv", [f"{name}_a0", f"{name}_w1"], [f"{name}_y"])],
            {f"{name}_w0": rng.normal(size=(6, 1, 3)), f"{name}_w1": rng.normal(size=(4, 6, 3))})

    model = if_model(branch)
    layers = extract_layers(model)
    assert [bool(x.scope) for x in layers] == [True] * 4
    chain = links(model, layers)
    assert chain[0].next == 1 and chain[2].next == 3 and chain[1].reason == "output of the model"


def test_a_second_transpose_does_not_leave_the_units_where_the_first_put_them():
    """``Conv -> Transpose to channels-last -> Transpose back -> Flatten -> Gemm``: the units end
    channels-first; the chain must not read the dense layer's columns channels-last."""
    rng = np.random.default_rng(0)
    t = {"w0": rng.normal(size=(4, 1, 3, 3)), "fc": rng.normal(size=(2, 4 * 16))}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c0"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Relu", ["nhwc"], ["a"]),
             helper.make_node("Transpose", ["a"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Flatten", ["nchw"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "back", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in t.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    link = links(model, extract_layers(model))[0]
    assert not (link.next == 1 and link.channels_last)


def _mean_pooled(seed: int = 0, perm=None) -> onnx.ModelProto:
    """``Gemm (6 -> 10) -> Relu`` per token, then mean pooling over the unmasked tokens as
    sentence encoders export it (the mask unsqueezed, expanded to the units, cast, multiplied
    in, summed over tokens and divided by its clipped sum), then ``Gemm (10 -> 3)``. ``perm``
    reorders the 10 units: the same function."""
    rng = np.random.default_rng(seed)
    p = np.arange(10) if perm is None else np.asarray(perm)
    t = {"w0": rng.normal(size=(10, 6)).astype(np.float32)[p],
         "w1": rng.normal(size=(3, 10)).astype(np.float32)[:, p],
         "b1": np.zeros(3, np.float32), "last": np.array([-1], np.int64),
         "tokens": np.array([1], np.int64), "tiny": np.array(1e-9, np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w0T"], ["h0"]),
             helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("Unsqueeze", ["mask", "last"], ["m1"]),
             helper.make_node("Shape", ["h"], ["shape"]),
             helper.make_node("Expand", ["m1", "shape"], ["m2"]),
             helper.make_node("Cast", ["m2"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["h", "m"], ["hm"]),
             helper.make_node("ReduceSum", ["hm", "tokens"], ["s"], keepdims=0),
             helper.make_node("ReduceSum", ["m", "tokens"], ["n0"], keepdims=0),
             helper.make_node("Clip", ["n0", "tiny"], ["n"]),
             helper.make_node("Div", ["s", "n"], ["pooled"]),
             helper.make_node("Gemm", ["pooled", "w1", "b1"], ["y"], transB=1)]
    t["w0T"] = t.pop("w0").T.copy()
    graph = helper.make_graph(
        nodes, "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t", 6]),
         helper.make_tensor_value_info("mask", TensorProto.INT64, ["n", "t"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(v, k) for k, v in t.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_mask_expanded_to_the_units_is_the_same_for_every_unit():
    model = _mean_pooled()
    g, dims = GraphIndex(model.graph), dims_of(model)
    assert same_for_every_unit(g, "m", -1, 3, dims)  # mask [n, t, 1] expanded and cast
    assert same_for_every_unit(g, "n", -1, 2, dims)  # its sum over the tokens, clipped
    assert not same_for_every_unit(g, "h", -1, 3, dims)  # the units themselves


def test_mean_pooling_over_masked_tokens_keeps_the_units(tmp_path):
    perm = np.random.default_rng(5).permutation(10)
    x = np.random.default_rng(1).normal(size=(4, 7, 6)).astype(np.float32)
    mask = (np.arange(7)[None] < np.array([[7], [3], [5], [1]])).astype(np.int64)
    a, b = _mean_pooled(), _mean_pooled(perm=perm)
    ya, yb = (ort.InferenceSession(m.SerializeToString()).run(None, {"x": x, "mask": mask})[0]
              for m in (a, b))
    np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-5)
    pa, pb = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(a, pa)
    onnx.save(b, pb)
    m = match(load_model(pa), load_model(pb))
    assert not m.limits
    assert all(pair["cosine"] > 0.9999 for pair in m.pairs)


@pytest.mark.parametrize("axis, index, keeps, unit_axis", [
    (2, np.array(0), True, 1),        # one row of the map: the channels stay on axis 1
    (1, np.array(0), False, None),    # one channel: the units are gone
    (0, np.array(0), True, 0),        # one sample (a scalar index drops the axis before them)
    (0, np.array([0, 1]), True, 1),   # two samples: the batch axis stays
])
def test_a_gather_along_other_axes_keeps_the_units(axis, index, keeps, unit_axis):
    g, node, dims = _node_model("Gather", index.astype(np.float32), axis=axis)
    node.input[1] = "c"
    g = GraphIndex(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["n", 8, 5, 5])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(index.astype(np.int64), "c")]))
    how = passage(g, node, "h", 1, dims)
    assert how.keeps is keeps and (not keeps or how.axis == unit_axis)


def test_the_shape_interpreter_agrees_with_onnxs_reference_implementation():
    """Sizes computed from shapes as exporters write them (a flatten target, "same" padding, a
    reshape target with a -1 resolved through Equal/Where, a range): the numpy interpreter
    gives what onnx's reference implementation gives, for every trial size."""
    from onnx_lineage.model.ops import _TRIALS, _UNKNOWN_OP, _evaluated, _interpreted
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    consts = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "two": i64(2),
              "last": i64(-1), "k": i64(3), "axes0": i64(0), "stride": i64(2), "lo": i64(1), "hi": i64(3)}
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
             helper.make_node("Concat", ["n1", "last"], ["flat"], axis=0),
             helper.make_node("Slice", ["s", "lo", "hi"], ["hw"]),
             helper.make_node("Mod", ["hw", "stride"], ["r"]),
             helper.make_node("Sub", ["k", "r"], ["p0"]),
             helper.make_node("Max", ["p0", "zero"], ["p1"]),  # a scalar broadcast
             helper.make_node("Div", ["p1", "two"], ["half"]),
             helper.make_node("Concat", ["half", "p1"], ["pads"], axis=0),
             helper.make_node("ConstantOfShape", ["two"], ["ones"],
                              value=numpy_helper.from_array(i64(1))),
             helper.make_node("Mul", ["ones", "last"], ["minus"]),
             helper.make_node("Equal", ["hw", "minus"], ["eq"]),
             helper.make_node("Where", ["eq", "ones", "hw"], ["target"]),
             helper.make_node("Squeeze", ["n1", "axes0"], ["n0"]),
             helper.make_node("Range", ["zero", "n0", "one"], ["positions"])]
    graph = helper.make_graph(
        nodes, "sizes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 7, 10])],
        [helper.make_tensor_value_info("flat", TensorProto.INT64, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    g, dims = GraphIndex(model.graph), dims_of(model)
    for name in ("flat", "pads", "target", "positions"):
        for trial in _TRIALS:
            mine = _interpreted(g, list(model.graph.node), name, dims, trial)
            assert mine is not _UNKNOWN_OP
            np.testing.assert_array_equal(mine, _evaluated(g, list(model.graph.node), name,
                                                           dims, trial))


def test_a_concat_on_the_unit_axis_gives_its_inputs_sizes_and_places_their_blocks():
    from onnx import helper

    from onnx_lineage.model.ops import block_of, concat_sizes
    node = helper.make_node("Concat", ["a", "b", "c"], ["y"], axis=1)
    dims = {"a": [None, 4, 8, 8], "b": [None, 3, 8, 8], "c": None}
    assert concat_sizes(node, 1, dims) == [4, 3, None]
    assert concat_sizes(node, -1, dims) is None  # another axis
    assert concat_sizes(helper.make_node("Concat", ["a", "a"], ["y"], axis=1), 1, dims) is None
    assert block_of([4, 3, None], 1, 9) == (4, 7)  # the unknown one's size read off the reader
    assert block_of([4, 3, None], 2, 9) == (7, 9)
    assert block_of([4, 3, None], 0, 7) is None  # nothing left for the third
    assert block_of([4, None, None], 0, 9) is None
    assert block_of([4, 3], 1, 7) == (4, 7)


def _one_op(op: str, constant: np.ndarray, first: bool = True) -> tuple:
    """A graph ``y = op(x, c)`` (``op(c, x)`` unless ``first``) on (N, 4, 5, 5) channels."""
    ins = ["x", "c"] if first else ["c", "x"]
    node = helper.make_node(op, ins, ["y"])
    graph = helper.make_graph(
        [node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(constant.astype(np.float32), "c")])
    return GraphIndex(graph), node


@pytest.mark.parametrize("op,constant,first,keeps,homogeneous", [
    ("Mul", np.array(0.5), True, True, True),  # a quantization scale: linear
    ("Mul", np.array(-2.0), True, True, True),  # linear whatever its sign
    ("Div", np.array(3.0), True, True, True),
    ("Div", np.array(3.0), False, True, False),  # c / x
    ("Add", np.array(1.0), True, True, False),
    ("Max", np.array(0.0), True, True, True),
    ("Max", np.array(0.1), True, True, False),
    ("Mul", np.arange(4).reshape(1, 4, 1, 1), True, False, False),  # a scale per unit
])
def test_the_registry_says_which_products_and_clamps_keep_the_units_and_their_scale(
        op, constant, first, keeps, homogeneous):
    g, node = _one_op(op, constant, first)
    how = passage(g, node, "x", 1, {"x": [1, 4, 5, 5]})
    assert how.keeps == keeps and (how.homogeneous == homogeneous or not keeps)


def test_a_clip_with_bounds_per_channel_stops_a_chain():
    """Every op of a chain is asked of the registry: a Clip with a bound per channel stops it
    (no quick path lets a Clip through for its name)."""
    model = pitch_net()
    clamp = next(n for n in model.graph.node if n.op_type == "Max")
    clamp.op_type, clamp.input[1] = "Clip", "lo"
    model.graph.initializer.append(numpy_helper.from_array(
        np.linspace(-1, 0, 8, dtype=np.float32).reshape(1, 8, 1, 1), "lo"))
    link = links(model, extract_layers(model))[0]
    assert link.next is None and "Clip with bounds per unit" in link.reason


def test_a_transpose_places_the_unit_axis_by_its_perm_and_a_broken_perm_places_nothing():
    from onnx_lineage.model.ops import transposed_axis
    node = helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])
    assert transposed_axis(node, 1) == 3 and transposed_axis(node, -1) == 2
    assert transposed_axis(helper.make_node("Transpose", ["x"], ["y"], perm=[0, 0, 2]), 1) is None
    assert transposed_axis(helper.make_node("Transpose", ["x"], ["y"]), 1) is None


def test_malformed_concats_and_group_norms_stop_the_units_without_an_error():
    from onnx_lineage.model.ops import concat_sizes
    scalar = helper.make_node("Concat", ["a", "b"], ["y"], axis=0)
    assert concat_sizes(scalar, 1, {"a": [], "b": []}) is None  # rank 0: no unit axis
    assert concat_sizes(scalar, 1, {"a": [3], "b": [4]}) is None  # no axis 1 in a vector
    from tests.evidence.models import groupnorm_block
    model = groupnorm_block(0)
    next(n for n in model.graph.node if n.op_type == "GroupNormalization").attribute[0].i = 0
    layers = extract_layers(model)
    assert not any(x.kind == "groupnorm" for x in layers)
    link = links(model, layers)[0]
    assert link.next is None and "GroupNormalization" in link.reason


def test_onnxruntime_s_simplified_layer_norm_in_the_default_domain_is_a_layer(tmp_path):
    import onnxruntime as ort
    from onnx_lineage.model.parameters import extract_layers
    from tests.residual import rms_model
    model = rms_model(0, norm="simplified")
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # runs
    ops = [x.op for x in extract_layers(model)]
    assert ops.count("SimplifiedLayerNormalization") == 3  # two blocks' norms and the last
    standard = [x.op for x in extract_layers(rms_model(0, norm="rms"))]
    assert [o.replace("Simplified", "").replace("LayerNormalization", "RMSNormalization")
            for o in ops] == standard
