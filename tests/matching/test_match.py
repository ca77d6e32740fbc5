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
    for layer in r.a_layers:
        for k, v in r.b_aligned[layer.index].items():
            np.testing.assert_allclose(v, layer.params[k], atol=1e-6)


def test_permuted_and_rescaled_copy_is_undone(tmp_path):
    w, b = torch_mlp_weights()
    ow, ob = obfuscate(w, b, np.random.default_rng(3))
    r = match(fixture_path("torch_mlp_legacy"), save(tmp_path, "obf", ow, ob))
    assert r.coverage == {"a": 1.0, "b": 1.0}
    assert any("permutation" in p["transforms"] for p in r.pairs)
    assert any("scale" in p["transforms"] for p in r.pairs)
    for layer in r.a_layers:
        for k, v in r.b_aligned[layer.index].items():
            np.testing.assert_allclose(v, layer.params[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("other", ["torch_cnn_bn", "torch_cnn_int8_dynamic", "torch_cnn_int8_qdq",
                                   "torch_cnn_int8_qoperator"])
def test_batchnorm_and_int8_variants_of_the_cnn(other):
    r = match(fixture_path("torch_cnn_folded"), fixture_path(other))
    assert r.coverage == {"a": 1.0, "b": 1.0}
    by_index = {layer.index: layer for layer in r.b_layers}
    for pair in r.pairs:
        a = next(x for x in r.a_layers if x.index == pair["a"])
        step = by_index[pair["b"]].step
        got = r.b_aligned[pair["a"]]["weight"]
        assert np.max(np.abs(got - a.weight)) <= max(step, 1e-5)
    if other == "torch_cnn_bn":
        assert r.folded == "b" and any("BatchNorm" in t for t in r.transforms)


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
    proto = load_model(fixture_path("torch_cnn_bn")).proto
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
    for layer in r.a_layers:
        for k, v in r.b_aligned[layer.index].items():
            np.testing.assert_allclose(v, layer.params[k], atol=1e-6)
