"""Residual streams found in graphs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from onnx_lineage.model.loading import load_model
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.streams import streams
from tests.conftest import fixture_path
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


@pytest.mark.parametrize("tail, reason", [("output", "it is an output of the model"),
                                          ("bias", "read by Add")])
def test_a_stream_that_cannot_be_permuted_says_why(tail, reason):
    (s,) = _streams(residual_model(tail=tail))
    assert s.reason == reason


@pytest.mark.parametrize("name", ["torch_mlp_legacy", "torch_cnn_bn", "torch_encoder", "sklearn_mlp"])
def test_models_without_residual_additions_have_no_stream(name):
    assert _streams(load_model(fixture_path(name)).proto) == []
