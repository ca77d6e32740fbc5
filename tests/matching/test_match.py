"""Parameter correspondence across frameworks, formats and obfuscation."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnx_lineage.demo.family import mlp_to_onnx, obfuscate
from onnx_lineage.matching import match
from tests.conftest import fixture_path, truth


def torch_mlp_weights():
    layers, _ = truth("torch_mlp_legacy")
    return [layers[i]["weight"] for i in range(3)], [layers[i]["bias"] for i in range(3)]


def save(tmp_path, name, w, b):
    p = tmp_path / f"{name}.onnx"
    onnx.save(mlp_to_onnx(w, b), p)
    return p


def test_pytorch_and_sklearn_exports_of_the_same_weights():
    r = match(fixture_path("torch_mlp_legacy"), fixture_path("sklearn_mlp_from_torch"))
    assert r.coverage == {"a": 1.0, "b": 1.0}
    for pair in r.pairs:
        assert pair["cosine"] > 1 - 1e-6
        assert "permutation" not in pair["transforms"]
    for layer in r.correspondence.a_layers:
        for k, v in r.correspondence.b_aligned[layer.index].items():
            np.testing.assert_allclose(v, layer.params[k], atol=1e-6)


def test_permuted_and_rescaled_copy_is_undone(tmp_path):
    w, b = torch_mlp_weights()
    ow, ob = obfuscate(w, b, np.random.default_rng(3))
    r = match(fixture_path("torch_mlp_legacy"), save(tmp_path, "obf", ow, ob))
    assert r.coverage == {"a": 1.0, "b": 1.0}
    assert any("permutation" in p["transforms"] for p in r.pairs)
    assert any("scale" in p["transforms"] for p in r.pairs)
    for layer in r.correspondence.a_layers:
        for k, v in r.correspondence.b_aligned[layer.index].items():
            np.testing.assert_allclose(v, layer.params[k], rtol=1e-4, atol=1e-5)


def test_without_rescaling_units_are_only_permuted(tmp_path):
    """``rescale=False``: B's units come into A's order with their own norms (each of the first
    layer's rows is A's times the obfuscation's positive factor for that unit)."""
    w, b = torch_mlp_weights()
    ow, ob = obfuscate(w, b, np.random.default_rng(3))
    r = match(fixture_path("torch_mlp_legacy"), save(tmp_path, "obf", ow, ob), rescale=False)
    assert not any("scale" in p["transforms"] for p in r.pairs)
    first = r.correspondence.a_layers[0]
    got = r.correspondence.b_aligned[first.index]["weight"].astype(np.float64)
    factor = np.linalg.norm(got, axis=1) / np.linalg.norm(first.weight.astype(np.float64), axis=1)
    np.testing.assert_allclose(got, factor[:, None] * first.weight, rtol=1e-4, atol=1e-5)
    assert np.ptp(factor) > 0.1


@pytest.mark.parametrize("other", ["torch_cnn_bn", "torch_cnn_int8_dynamic", "torch_cnn_int8_qdq",
                                   "torch_cnn_int8_qoperator"])
def test_batchnorm_and_int8_variants_of_the_cnn(other):
    r = match(fixture_path("torch_cnn_folded"), fixture_path(other))
    assert r.coverage == {"a": 1.0, "b": 1.0}
    by_index = {layer.index: layer for layer in r.correspondence.b_layers}
    for pair in r.pairs:
        a = next(x for x in r.correspondence.a_layers if x.index == pair["a"])
        step = by_index[pair["b"]].step
        got = r.correspondence.b_aligned[pair["a"]]["weight"]
        assert np.max(np.abs(got - a.weight)) <= max(step, 1e-5)
    if other == "torch_cnn_bn":
        assert r.correspondence.folded == "b" and any("BatchNorm" in t for t in r.transforms)


@pytest.mark.parametrize("other", ["torch_mlp_int8_dynamic", "torch_mlp_int8_qdq",
                                   "torch_mlp_int8_qoperator", "torch_mlp_fp16",
                                   "torch_mlp_castmul", "torch_mlp_dynamo"])
def test_int8_and_reexports_of_the_mlp(other):
    r = match(fixture_path("torch_mlp_legacy"), fixture_path(other))
    assert r.coverage == {"a": 1.0, "b": 1.0}
    assert all(p["cosine"] > 0.999 for p in r.pairs)


def test_new_head_of_another_size(tmp_path):
    w, b = torch_mlp_weights()
    rng = np.random.default_rng(0)
    head_w = rng.normal(size=(4, 16)).astype(np.float32)
    p = save(tmp_path, "transfer", w[:2] + [head_w], b[:2] + [np.zeros(4, np.float32)])
    r = match(fixture_path("torch_mlp_legacy"), p)
    assert [(x["a"], x["b"]) for x in r.pairs] == [(0, 0), (1, 1)]
    assert r.unmatched == {"a": [2], "b": [2]}
    assert 0.9 < r.coverage["a"] < 1.0
    assert all(x["cosine"] > 1 - 1e-6 for x in r.pairs)


def test_unrelated_architectures_have_coverage_zero():
    r = match(fixture_path("torch_mlp_legacy"), fixture_path("torch_lstm"))
    assert r.coverage == {"a": 0.0, "b": 0.0}
    assert r.pairs == []
    assert "no parametric layer in common" in r.statement


def test_independent_models_are_not_made_identical():
    r = match(fixture_path("torch_mlp_legacy"), fixture_path("sklearn_mlp"))
    assert r.coverage == {"a": 1.0, "b": 1.0}
    assert max(p["cosine"] for p in r.pairs) < 0.9


def test_keras_export_lines_up_with_a_zero_bias_added():
    r = match(fixture_path("keras_mlp"), fixture_path("keras_mlp"))
    assert r.coverage == {"a": 1.0, "b": 1.0}
    assert all(p["cosine"] > 1 - 1e-6 for p in r.pairs)
    r2 = match(fixture_path("torch_mlp_legacy"), fixture_path("keras_mlp"))
    assert any("zero bias added" in p["transforms"] for p in r2.pairs)


def test_result_serialises():
    r = match(fixture_path("torch_mlp_legacy"), fixture_path("torch_mlp_int8_qdq"))
    d = r.to_dict()
    assert set(d) >= {"pairs", "coverage", "unmatched", "transforms", "schema_version"}
    assert not any(k.startswith("_") for k in d)


def test_conv_channel_permutation_through_batchnorm_is_undone(tmp_path):
    """Permute the first conv's channels, its BatchNorm, and the next conv's inputs."""
    from onnx import numpy_helper

    from onnx_lineage.model.loading import load_model
    from onnx_lineage.model.parameters import extract_layers
    from onnx_lineage.model.weights import inlined
    proto = inlined(load_model(fixture_path("torch_cnn_bn")).proto)  # edited, then saved
    layers = extract_layers(proto)
    conv1, bn1, conv2 = layers[0], layers[1], layers[2]
    nodes = {n.name: n for n in proto.graph.node}
    inits = {t.name: t for t in proto.graph.initializer}
    perm = np.random.default_rng(1).permutation(conv1.units)

    def rewrite(layer, key, fn):
        site = layer.sites[key]
        t = inits[nodes[site.node].input[site.slot]]
        t.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(t)), t.name))

    rewrite(conv1, "weight", lambda a: a[perm])
    rewrite(conv1, "bias", lambda a: a[perm])
    for key in ("weight", "bias", "mean", "var"):
        rewrite(bn1, key, lambda a: a[perm])
    rewrite(conv2, "weight", lambda a: a[:, perm])
    p = tmp_path / "cnn_perm.onnx"
    onnx.save(proto, p)
    r = match(fixture_path("torch_cnn_bn"), p)
    assert r.coverage == {"a": 1.0, "b": 1.0}
    assert "permutation" in r.pairs[0]["transforms"]
    for layer in r.correspondence.a_layers:
        for k, v in r.correspondence.b_aligned[layer.index].items():
            np.testing.assert_allclose(v, layer.params[k], atol=1e-6)


def _small_cnn(conv_w, conv_b, dense_w, dense_b, channels_last):
    """x (n, 64) -> 8x8 image -> Conv -> Relu -> flatten -> dense, in one of two flatten orders.

    ``channels_last`` builds what tf2onnx writes for Keras: a Transpose to NHWC, a Reshape whose
    shape is computed from a ``Shape`` of the map, and a MatMul whose weight is ``[in, out]`` with
    rows in ``(h, w, c)`` order. Otherwise PyTorch's: Flatten of NCHW and Gemm ``[out, in]``.
    ``dense_w`` is always given in the channels-first order (out, c * 64 + s).
    """
    from onnx import TensorProto, helper, numpy_helper
    c = conv_w.shape[0]
    init = [numpy_helper.from_array(conv_w, "cw"), numpy_helper.from_array(conv_b, "cb"),
            numpy_helper.from_array(dense_b, "db"),
            numpy_helper.from_array(np.array([-1, 1, 8, 8], np.int64), "img_shape")]
    nodes = [helper.make_node("Reshape", ["x", "img_shape"], ["img"]),
             helper.make_node("Conv", ["img", "cw", "cb"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["act"])]
    if channels_last:
        w = dense_w.reshape(-1, c, 64).transpose(0, 2, 1).reshape(-1, c * 64)
        init += [numpy_helper.from_array(np.ascontiguousarray(w.T), "dw"),
                 numpy_helper.from_array(np.array([0], np.int64), "zero"),
                 numpy_helper.from_array(np.array([1], np.int64), "one"),
                 numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
        nodes += [helper.make_node("Transpose", ["act"], ["nhwc"], perm=[0, 2, 3, 1]),
                  helper.make_node("Shape", ["act"], ["act_shape"]),
                  helper.make_node("Slice", ["act_shape", "zero", "one"], ["batch"]),
                  helper.make_node("Concat", ["batch", "minus_one"], ["flat_shape"], axis=0),
                  helper.make_node("Reshape", ["nhwc", "flat_shape"], ["flat"]),
                  helper.make_node("MatMul", ["flat", "dw"], ["mm"]),
                  helper.make_node("Add", ["mm", "db"], ["logits"])]
    else:
        init.append(numpy_helper.from_array(dense_w, "dw"))
        nodes += [helper.make_node("Flatten", ["act"], ["flat"], axis=1),
                  helper.make_node("Gemm", ["flat", "dw", "db"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
                          init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    return m


def _cnn_weights(seed=0, channels=6):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((channels, 1, 3, 3)).astype(np.float32),
            rng.standard_normal(channels).astype(np.float32),
            (rng.standard_normal((10, channels * 64)) / 8).astype(np.float32),
            rng.standard_normal(10).astype(np.float32))


@pytest.mark.parametrize("a_last,b_last", [(False, True), (True, False), (True, True)])
def test_flatten_orders_line_up_and_permuted_channels_are_undone(tmp_path, digits, a_last, b_last):
    cw, cb, dw, db = _cnn_weights()
    perm = np.random.default_rng(1).permutation(cw.shape[0])
    pdw = dw.reshape(10, -1, 64)[:, perm].reshape(10, -1)  # the same function, channels permuted
    pa, pb = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(_small_cnn(cw, cb, dw, db, a_last), pa)
    onnx.save(_small_cnn(cw[perm], cb[perm], pdw, db, b_last), pb)
    from onnx_lineage.model.loading import load_model
    from onnx_lineage.model.runner import Runner
    x = digits.arrays["x"][:50]
    out = [Runner(load_model(p).proto, device="cpu").predict({"x": x}).scores for p in (pa, pb)]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4, atol=1e-4)  # same function
    r = match(pa, pb)
    assert [p["kind"] for p in r.pairs] == ["conv", "dense"]
    assert all(p["cosine"] > 1 - 1e-5 for p in r.pairs), r.pairs
    assert "permutation" in r.pairs[0]["transforms"]
    assert any("flatten order" in t for t in r.transforms) == (a_last != b_last)


def test_the_aligned_channels_last_copy_interpolates_at_zero_barrier(tmp_path, digits):
    from onnx_lineage.analyses.determination import determine
    cw, cb, dw, db = _cnn_weights(2)
    perm = np.random.default_rng(3).permutation(cw.shape[0])
    pa, pb = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(_small_cnn(cw, cb, dw, db, False), pa)
    onnx.save(_small_cnn(cw[perm], cb[perm], dw.reshape(10, -1, 64)[:, perm].reshape(10, -1), db,
                         True), pb)
    r = determine(pa, pb, digits)
    assert r.verdict == "related" and r.similarity > 0.999
    assert max(c["loss"] for c in r.curve) - min(c["loss"] for c in r.curve) < 1e-4  # a flat path


def test_a_real_keras_cnn_matches_its_pytorch_layout_twin(tmp_path, digits):
    """The committed tf2onnx export of a Keras CNN (NHWC input, Transpose + Shape/Reshape flatten,
    MatMul) against the same weights laid out as PyTorch would export them (NCHW Flatten, Gemm
    with channel-major columns), its conv channels permuted on top."""
    from onnx import TensorProto, helper, numpy_helper

    from onnx_lineage.model.loading import load_model
    from onnx_lineage.model.parameters import extract_layers
    from onnx_lineage.model.runner import Runner
    keras = load_model(fixture_path("keras_cnn"))
    conv, dense = extract_layers(keras.proto)
    c, spatial = conv.units, dense.weight.shape[1] // conv.units
    perm = np.random.default_rng(0).permutation(c)
    first = dense.weight.reshape(10, spatial, c).transpose(0, 2, 1)[:, perm]  # channel-major
    init = [numpy_helper.from_array(v, k) for k, v in {
        "shape": np.array([-1, 1, 8, 8], np.int64), "cw": conv.params["weight"][perm],
        "cb": conv.params["bias"][perm], "dw": first.reshape(10, -1).astype(np.float32),
        "db": dense.params["bias"]}.items()]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["img"]),
             helper.make_node("Conv", ["img", "cw", "cb"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["act"]),
             helper.make_node("MaxPool", ["act"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["pool"], ["flat"]),
             helper.make_node("Gemm", ["flat", "dw", "db"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "twin", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        ["n", 8, 8, 1])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
                          init)
    twin = tmp_path / "twin.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), twin)
    x = digits.arrays["x"][:50].reshape(-1, 8, 8, 1)
    out = [Runner(load_model(p).proto, device="cpu").predict({"x": x}).scores
           for p in (fixture_path("keras_cnn"), twin)]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4, atol=1e-4)  # the same function
    r = match(fixture_path("keras_cnn"), twin)
    assert all(p["cosine"] > 1 - 1e-5 for p in r.pairs), r.pairs
    assert "permutation" in r.pairs[0]["transforms"]
