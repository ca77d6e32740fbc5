"""Graph utilities: shape inference without the weights."""

from __future__ import annotations

import onnx
import pytest

from onnx_lineage.model.graph import inferred_values
from onnx_lineage.model.loading import load_model
from tests.conftest import fixture_names, fixture_path


@pytest.mark.parametrize("name", fixture_names())
def test_shape_inference_without_weights_gives_the_same_shapes(name):
    """Batch sizing infers shapes with weights handed over by shape alone: same answer."""
    model = load_model(fixture_path(name)).proto
    full = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    want = {v.name: v.SerializeToString() for v in list(full.graph.value_info) + list(full.graph.output)}
    got = {v.name: v.SerializeToString() for v in inferred_values(model)}
    assert got == want
