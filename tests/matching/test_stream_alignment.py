"""Undoing residual-stream permutations in ``match``."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.analyses.determination import determine
from onnx_lineage.data import Dataset
from onnx_lineage.matching import match
from tests.conv_residual import conv_residual_model, projection_model
from tests.residual import permutations, residual_model, token_data


def test_a_permuted_stream_is_undone(save):
    p, q = permutations()
    a, b = save("a", residual_model()), save("b", residual_model(stream=p, hidden=q))
    m = match(a, b)
    assert all(pair["cosine"] > 0.9999 for pair in m.pairs)
    assert any("residual stream of B (12 units, 9 layers)" in t for t in m.transforms)
    assert all("stream permutation" in pair["transforms"] for pair in m.pairs)
    assert not m.limits
    # without undoing permutations the stream's layers look unrelated
    plain = match(a, b, permutations=False)
    assert min(pair["cosine"] for pair in plain.pairs) < 0.5


def test_an_unpermuted_derived_model_is_left_as_it_is(save):
    a, b = save("a", residual_model()), save("b", residual_model(noise=0.05))
    m = match(a, b)
    assert not any("stream" in t for t in m.transforms)
    assert all(pair["cosine"] > 0.99 for pair in m.pairs)


def test_a_stream_left_in_place_is_reported(save):
    a, b = save("a", residual_model(tail="bias")), save("b", residual_model(tail="bias"))
    m = match(a, b)
    assert any("residual stream of 12 units left in place" in x and "read by Add" in x
               for x in m.limits)


def test_an_obfuscated_residual_model_is_related(save):
    """A permuted copy is the same function: without the stream undone its barrier was 0.58
    and the verdict "unrelated"."""
    p, q = permutations()
    a, b = save("a", residual_model()), save("b", residual_model(stream=p, hidden=q))
    r = determine(a, b, token_data())
    assert r.verdict == "related" and r.barrier < 1e-6


def test_a_permuted_convolutional_stream_and_gated_channels_are_undone(save):
    a = save("a", conv_residual_model())
    b = save("b", conv_residual_model(permuted=True))
    m = match(a, b)
    assert all(pair["cosine"] > 0.9999 for pair in m.pairs) and not m.limits
    assert any("residual stream of B (16 units, 14 layers)" in t for t in m.transforms)
    assert any("gated hidden units of B (24 units, 7 layers)" in t for t in m.transforms)


@pytest.mark.parametrize("seed, related", [(0, True), (5, False)])
def test_a_permuted_fine_tune_of_a_residual_cnn_is_related_an_independent_one_is_not(save, seed,
                                                                                     related):
    a = save("a", conv_residual_model())
    b = save("b", conv_residual_model(seed, permuted=True, noise=0.1 if related else 0.0))
    x = np.random.default_rng(0).random((200, 1, 8, 8)).astype(np.float32)
    r = determine(a, b, Dataset({"x": x}), seed=0)
    assert (r.verdict == "related") is related
    assert r.p_value < 1e-6 if related else r.p_value > 0.01


def test_two_streams_joined_by_a_projection_shortcut_are_both_undone(save, same_function):
    a, b = save("a", projection_model()), save("b", projection_model(permuted=True))
    same_function(a, b)
    m = match(a, b)
    assert all(pair["cosine"] > 0.9999 for pair in m.pairs) and not m.limits
    assert any("residual stream of B (8 units" in t for t in m.transforms)
    assert any("residual stream of B (12 units" in t for t in m.transforms)


def _output_stream(m):
    """The unit-order row of the stream that is the model's output."""
    from onnx_lineage.evidence.unit_order import unit_order_test
    rows = unit_order_test(m.correspondence.class_matches, 0.01).classes
    (row,) = [r for r in rows if r.name == "residual stream (the model's output)"]
    return row


def test_a_stream_that_is_the_output_is_compared_in_place_as_a_class(save):
    a, b = save("a", residual_model(tail="output")), save("b", residual_model(tail="output",
                                                                               noise=0.05))
    m = match(a, b)
    assert not any("left in place" in x for x in m.limits)
    assert _output_stream(m).fixed_points == 12
    assert not any("stream" in t for t in m.transforms)


def test_an_output_stream_is_never_permuted_and_a_permuted_one_is_not_in_order(save):
    # permuting a stream that is the output changes the function: B stays as it is
    p, q = permutations()
    a = save("a", residual_model(tail="output"))
    b = save("b", residual_model(tail="output", stream=p, hidden=q))
    m = match(a, b)
    assert not any("residual stream of B" in t for t in m.transforms)
    row = _output_stream(m)
    assert row.fixed_points == int(np.sum(p == np.arange(12)))
