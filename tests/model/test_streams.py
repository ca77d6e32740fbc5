"""Residual streams found in graphs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnx_lineage.model.loading import load_model
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.streams import streams
from tests.conftest import fixture_path
from tests.conv_residual import conv_residual_model
from tests.graphs import branch_graph, if_model
from tests.residual import D, permutations, residual_model


def _streams(model):
    return streams(model, extract_layers(model))


def test_the_builder_permutes_without_changing_the_function():
    ids = np.random.default_rng(0).integers(0, 30, size=(6, 8))
    p, q = permutations()
    a, b = (ort.InferenceSession(m.SerializeToString()).run(None, {"ids": ids})[0]
            for m in (residual_model(), residual_model(stream=p, hidden=q)))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_residual_stream_lists_its_writers_readers_and_layernorms():
    layers = extract_layers(residual_model())
    (s,) = streams(residual_model(), layers)
    kinds = {x.index: (x.kind, x.node) for x in layers}
    assert s.reason == "" and s.width == D
    assert [kinds[i][1] for i in s.writers] == ["embed", "ff2_0", "ff2_1"]
    assert [kinds[i][1] for i in s.readers] == ["ff1_0", "ff1_1", "head"]
    assert [kinds[i][0] for i in s.followers] == ["layernorm"] * 3


def test_a_stream_that_cannot_be_permuted_says_why():
    (s,) = _streams(residual_model(tail="bias"))
    assert s.reason == "read by Add" and not s.pinned


def test_a_stream_that_is_the_models_output_is_pinned_not_refused():
    # an embedding model: the stream's order is part of the function, its members all layers
    (s,) = _streams(residual_model(tail="output"))
    assert s.reason == "" and s.pinned == "it is an output of the model"
    assert len(s.writers) == 3 and len(s.readers) == 3


@pytest.mark.parametrize("name", ["torch_mlp_legacy", "torch_cnn_bn", "torch_encoder", "sklearn_mlp"])
def test_models_without_residual_additions_have_no_stream(name):
    assert _streams(load_model(fixture_path(name)).proto) == []


def test_the_conv_builder_permutes_without_changing_the_function():
    x = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
    a, b = (ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
            for m in (conv_residual_model(), conv_residual_model(permuted=True)))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("torch_like", [False, True])
def test_a_convolutional_stream_runs_through_batchnorm_squeeze_excite_and_projection(torch_like):
    # torch_like: the rank of the maps unknown to shape inference, pooling by ReduceMean
    model = conv_residual_model(torch_like=torch_like)
    layers = extract_layers(model)
    node = {x.index: x.node for x in layers}
    stream, gated = _streams(model)
    assert stream.residual and stream.reason == "" and stream.width == 16
    # the stem, each block's last conv, the SE gate's expanding conv, the inverted block's project
    assert [node[i] for i in stream.writers] == ["stem", "c2_0", "c2_1", "se2", "pr"]
    assert [node[i] for i in stream.readers] == ["c1_0", "c1_1", "se1", "ex", "logits"]
    assert [node[i] for i in stream.followers] == ["stem_bn", "bn2_0", "bn2_1", "pr_bn"]
    # the inverted block's expanded channels: gated by its own SE, with the depthwise conv
    assert not gated.residual and gated.reason == "" and gated.width == 24
    assert [node[i] for i in gated.writers] == ["ex", "mse2"]
    assert [node[i] for i in gated.readers] == ["mse1", "pr"]
    assert [node[i] for i in gated.followers] == ["ex_bn", "dw", "dw_bn"]


def _heads_on_a_trunk(seed: int = 0, perm=None):
    """``Gemm (6 -> 10) -> PRelu (a slope per unit) -> three Gemm heads (2, 4, 3)``, as a
    detector's last trunk layer feeds its heads; ``perm`` reorders the 10 trunk units (with the
    slopes and every head's inputs): the same function."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    p = np.arange(10) if perm is None else np.asarray(perm)
    t = {"w": rng.normal(size=(10, 6))[p], "b": rng.normal(size=10)[p],
         "slope": rng.uniform(0.05, 0.5, size=10)[p]}
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
             helper.make_node("PRelu", ["h", "slope"], ["a"])]
    outputs = []
    for k, n in enumerate((2, 4, 3)):
        t[f"head{k}"] = rng.normal(size=(n, 10))[:, p]
        nodes.append(helper.make_node("Gemm", ["a", f"head{k}"], [f"y{k}"], transB=1))
        outputs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, ["n", n]))
    graph = helper.make_graph(
        nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])], outputs,
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in t.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_units_read_by_several_heads_are_one_class_with_their_prelu_slopes(tmp_path):
    import onnx

    from onnx_lineage.evidence import data_free
    from onnx_lineage.matching import match
    model = _heads_on_a_trunk()
    layers = extract_layers(model)
    assert [x.kind for x in layers] == ["dense", "prelu", "dense", "dense", "dense"]
    (s,) = _streams(model)
    assert s.shared and s.writers == (0,) and s.readers == (2, 3, 4) and s.followers == (1,)
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(model, a)
    onnx.save(_heads_on_a_trunk(perm=np.random.default_rng(2).permutation(10)), b)
    m = match(str(a), str(b))
    assert all(p["cosine"] > 0.9999 for p in m.pairs) and not m.limits
    (cls,) = data_free(m).classes
    assert cls.name == "layer 0 units (read by 3 layers)" and cls.per_unit == (1,)


def _conv_stream_to_dense(perm=None) -> onnx.ModelProto:
    """A 1-d conv stream ``x + conv(relu(conv(x)))`` of 6 channels on ``(N, 6, 1, T)``, then
    Squeeze of the height, Transpose to ``(N, T, 6)`` and a dense head per position, as text
    recognisers end. ``perm`` reorders the stream's channels: the same function."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    p = np.arange(6) if perm is None else np.asarray(perm)
    t = {"w0": rng.normal(size=(6, 2, 1, 1)).astype(np.float32)[p],
         "w1": rng.normal(size=(6, 6, 1, 3)).astype(np.float32)[p][:, p],
         "wh": rng.normal(size=(6, 4)).astype(np.float32)[p], "two": np.array([2], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["s0"]),
             helper.make_node("Relu", ["s0"], ["r"]),
             helper.make_node("Conv", ["r", "w1"], ["c1"], pads=[0, 1, 0, 1]),
             helper.make_node("Add", ["s0", "c1"], ["s1"]),
             helper.make_node("Squeeze", ["s1", "two"], ["sq"]),
             helper.make_node("Transpose", ["sq"], ["tr"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["tr", "wh"], ["y"])]
    graph = helper.make_graph(
        nodes, "rec", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 1, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 9, 4])],
        [numpy_helper.from_array(v, k) for k, v in t.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_stream_is_followed_through_a_squeeze_and_a_transpose_to_a_dense_head():
    model = _conv_stream_to_dense()
    layers = extract_layers(model)
    (s,) = streams(model, layers)
    assert s.reason == "" and s.width == 6
    assert [layers[i].op for i in s.readers] == ["Conv", "MatMul"]
    x = np.random.default_rng(1).normal(size=(3, 2, 1, 9)).astype(np.float32)
    a, b = (ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
            for m in (model, _conv_stream_to_dense(perm=[3, 0, 5, 1, 4, 2])))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_stream_inside_an_if_branch_is_found():
    """A detector that keeps its residual blocks in the branches of an If (one per sample rate):
    each branch's stream is found within it."""
    from onnx import helper
    rng = np.random.default_rng(0)

    def branch(name: str) -> onnx.GraphProto:
        return branch_graph(name, [
            helper.make_node("Conv", ["x", f"{name}_w0"], [f"{name}_s0"], pads=[1, 1]),
            helper.make_node("Relu", [f"{name}_s0"], [f"{name}_r"]),
            helper.make_node("Conv", [f"{name}_r", f"{name}_w1"], [f"{name}_c1"], pads=[1, 1]),
            helper.make_node("Add", [f"{name}_s0", f"{name}_c1"], [f"{name}_s1"]),
            helper.make_node("Conv", [f"{name}_s1", f"{name}_w2"], [f"{name}_y"])],
            {f"{name}_w0": rng.normal(size=(6, 1, 3)), f"{name}_w1": rng.normal(size=(6, 6, 3)),
             f"{name}_w2": rng.normal(size=(2, 6, 1))})

    model = if_model(branch)
    layers = extract_layers(model)
    found = streams(model, layers)
    assert len(found) == 2 and all(s.reason == "" and s.width == 6 for s in found)
    assert sorted(str({layers[i].scope for i in s.members}) for s in found) == [
        "{'If_0.else_branch'}", "{'If_0.then_branch'}"]


def test_a_stream_concatenated_on_its_axis_is_read_as_one_block():
    from tests.evidence.models import concat_block
    model = concat_block(0, stream=True)
    layers = extract_layers(model)
    (s,) = streams(model, layers)
    reader = next(x.index for x in layers if x.node == "c")
    assert not s.reason and s.width == 4 and reader in s.readers
    assert s.span(reader) == (0, 4) and s.span(s.readers[0]) == ()


@pytest.mark.parametrize("split_sizes", [True, False])
def test_a_layer_split_into_gated_halves_writes_one_unit_axis_in_two_blocks(split_sizes):
    from tests.evidence.models import glu_mlp
    model = glu_mlp(0, split_sizes=split_sizes)
    layers = extract_layers(model)
    (s,) = streams(model, layers)
    assert not s.reason and not s.residual and s.width == 6
    assert s.writers == (layers[0].index,) and s.tiling(layers[0].index) == 2
    assert s.readers == (layers[1].index,) and s.tiling(layers[1].index) == 1


def test_a_split_into_unequal_blocks_is_no_unit_axis():
    from onnx import numpy_helper

    from tests.evidence.models import glu_mlp
    model = glu_mlp(0)
    sizes = next(t for t in model.graph.initializer if t.name == "sizes")
    sizes.CopyFrom(numpy_helper.from_array(np.array([5, 7], np.int64), "sizes"))
    assert not any(s.tiles for s in streams(model, extract_layers(model)))
