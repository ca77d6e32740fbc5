"""Canonical parameters equal the source framework's weights, for every exporter and format."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.model.loading import load_model
from onnx_lineage.model.parameters import extract_layers
from tests.conftest import FIXTURES, fixture_names, fixture_path, truth

WITH_TRUTH = [n for n in fixture_names() if (FIXTURES / f"{n}.truth.npz").exists()]


@pytest.mark.parametrize("name", WITH_TRUTH)
def test_canonical_parameters_equal_source_weights(name):
    layers = extract_layers(load_model(fixture_path(name)).proto)
    expected, _ = truth(name)
    assert len(layers) == len(expected), [layer.kind for layer in layers]
    for layer in layers:
        for key, want in expected[layer.index].items():
            got = layer.params[key]
            assert got.dtype == np.float32
            assert got.shape == want.shape, (layer.index, key)
            # float weights within 1e-6; fp16 within one half-precision step; int8 within one
            # step of the layer's own quantization scale
            if layer.quant is None:
                tol = 1e-6
            elif layer.quant == "fp16":
                tol = float(np.abs(want).max()) * 2.0**-10
            else:
                tol = layer.step
            assert np.max(np.abs(got - want)) <= tol + 1e-6, (name, layer.index, key)


@pytest.mark.parametrize("name,quant", [
    ("torch_mlp_int8_dynamic", "dynamic"), ("torch_mlp_int8_qdq", "qdq"),
    ("torch_mlp_int8_qoperator", "qoperator"), ("torch_cnn_int8_dynamic", "dynamic"),
    ("torch_cnn_int8_qdq", "qdq"), ("torch_cnn_int8_qoperator", "qoperator"),
    ("torch_mlp_castmul", "cast_mul"), ("torch_mlp_fp16", "fp16")])
def test_quantization_is_recognised(name, quant):
    layers = extract_layers(load_model(fixture_path(name)).proto)
    assert layers and all(layer.quant == quant for layer in layers if layer.kind != "batchnorm")
    if quant not in ("fp16",):
        assert all(layer.step > 0 for layer in layers)


def test_layer_kinds_of_the_encoder_and_lstm():
    enc = extract_layers(load_model(fixture_path("torch_encoder")).proto)
    assert [layer.kind for layer in enc] == ["embedding", "layernorm", "dense", "dense"]
    lstm = extract_layers(load_model(fixture_path("torch_lstm")).proto)
    assert [layer.kind for layer in lstm] == ["lstm"]
    assert set(lstm[0].params) == {"weight", "recurrent", "bias"}


def test_sites_write_back_the_stored_orientation():
    proto = load_model(fixture_path("sklearn_mlp")).proto
    from onnx_lineage.model.weights import tensor_array
    inits = {t.name: tensor_array(t) for t in proto.graph.initializer}
    nodes = {n.name: n for n in proto.graph.node}
    for layer in extract_layers(proto):
        site = layer.sites["weight"]
        stored = inits[nodes[site.node].input[site.slot]]
        np.testing.assert_array_equal(site.store(layer.weight), stored)


def test_weights_inside_if_branches_are_found():
    from onnx import TensorProto, helper, numpy_helper
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    branch = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y_b"])], "then",
        [], [helper.make_tensor_value_info("y_b", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w.T.copy(), "w")])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y_e"])], "else", [],
                              [helper.make_tensor_value_info("y_e", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3]),
         helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (layer,) = extract_layers(model)
    np.testing.assert_array_equal(layer.weight, w)
    assert layer.scope and not layer.sites["weight"].writable


def test_as_single_widens_half_precision_exactly_in_any_layout():
    from onnx_lineage.model.parameters import as_single
    rng = np.random.default_rng(6)
    half = rng.normal(size=(40, 30)).astype(np.float16)
    for a in (half, half.T, half[::2]):
        out = as_single(a)
        assert out.dtype == np.float32 and out.shape == a.shape
        np.testing.assert_array_equal(out, a.astype(np.float32))
    single = rng.normal(size=5).astype(np.float32)
    assert as_single(single) is single
