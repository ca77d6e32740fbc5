"""Intermediate values taken from onnxruntime (the function test's input)."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage import memory
from onnx_lineage.memory import MemoryBudgetError
from onnx_lineage.model.activations import unit_values
from tests.residual import D, F, LENGTH, rms_model, token_data


def test_values_are_one_row_per_sample_and_the_model_is_left_as_it_was():
    model = rms_model(gated=True)
    before = model.SerializeToString()
    values = unit_values(model, ["m1_0", "m3_1", "x1"], token_data(10))
    assert values["m1_0"].shape == (10 * LENGTH, F) and values["x1"].shape == (10 * LENGTH, D)
    assert all(v.dtype == np.float32 for v in values.values())
    assert model.SerializeToString() == before


def test_values_match_the_layer_computed_by_hand():
    from onnx import numpy_helper
    model = rms_model(gated=True, norm="ops")
    w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    data = token_data(4)
    x = w["E"][data.arrays["ids"]]
    h = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5)
    got = unit_values(model, ["m3_0"], data)["m3_0"]
    np.testing.assert_allclose(got, (h @ w["W3_0"]).reshape(-1, F), atol=1e-4)


def test_every_row_run_is_kept_in_order():
    model, data = rms_model(gated=True), token_data(7)
    got = unit_values(model, ["m1_0"], data)["m1_0"]
    one_by_one = [unit_values(model, ["m1_0"], data.subset(np.array([i])))["m1_0"]
                  for i in range(7)]
    np.testing.assert_allclose(got, np.concatenate(one_by_one), rtol=1e-5, atol=1e-6)


def test_samples_are_thinned_evenly_and_only_the_rows_needed_are_run():
    values = unit_values(rms_model(gated=True), ["m1_0"], token_data(300), samples=100)
    assert values["m1_0"].shape == (100, F)


def test_the_values_are_refused_beyond_the_memory_budget():
    with memory.limited(100_000), pytest.raises(MemoryBudgetError, match="hidden units' values"):
        unit_values(rms_model(gated=True), ["m1_0", "m3_0"], token_data(300))
