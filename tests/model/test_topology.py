"""Chains through a Concat: each input's units are one block of the reader's input channels."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.topology import links
from tests.evidence.models import concat_block


def test_units_concatenated_on_their_axis_reach_the_reader_as_one_block():
    model = concat_block(0)
    layers = extract_layers(model)
    found = {layers[i].node: link for i, link in links(model, layers).items()}
    assert found["a"].next_span == (0, 4) and found["b"].next_span == (4, 7)
    assert found["a"].next == found["b"].next  # the conv after the Concat
    assert found["a"].ops == ("Relu", "Concat") and found["a"].homogeneous


def test_a_concat_on_another_axis_stops_the_units_and_says_so():
    model = concat_block(0)
    next(x for x in model.graph.node if x.op_type == "Concat").attribute[0].i = 2  # on height
    layers = extract_layers(model)
    found = {layers[i].node: link for i, link in links(model, layers).items()}
    assert found["a"].next is None and "Concat on another axis" in found["a"].reason


def test_the_permuted_blocks_are_the_same_function():
    """The fixture's permutation is function-preserving (what the matching tests rely on)."""
    x = np.random.default_rng(0).normal(size=(3, 1, 6, 6)).astype(np.float32)
    perms = (np.array([2, 0, 3, 1]), np.array([1, 2, 0]))
    outs = [ort.InferenceSession(concat_block(0, p).SerializeToString()).run(None, {"x": x})[0]
            for p in (None, perms)]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    onnx.checker.check_model(concat_block(0, perms, stream=True))


def test_a_group_norm_keeps_the_channels_permutable_within_its_groups():
    from tests.evidence.models import groupnorm_block
    for opset, followed in ((21, True), (18, False)):  # scale per channel, or per group
        model = groupnorm_block(0, opset=opset)
        layers = extract_layers(model)
        norm = next(x for x in layers if x.kind == "groupnorm")
        link = links(model, layers)[layers[0].index]
        assert link.groups == 3 and link.next is not None
        assert (norm.index in link.followers) == followed


def test_a_permutation_within_the_groups_is_the_same_function_and_across_them_is_not():
    from tests.evidence.models import groupnorm_block
    x = np.random.default_rng(0).normal(size=(3, 1, 6, 6)).astype(np.float32)

    def run(perm, opset=21):
        model = groupnorm_block(0, perm, opset).SerializeToString()
        return ort.InferenceSession(model).run(None, {"x": x})[0]

    np.testing.assert_allclose(run(np.array([1, 0, 3, 2, 5, 4])), run(None), rtol=1e-4,
                               atol=1e-5)
    assert not np.allclose(run(np.array([2, 1, 0, 3, 4, 5])), run(None), rtol=1e-3, atol=1e-4)
