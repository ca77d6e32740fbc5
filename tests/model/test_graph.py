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


def test_nodes_nothing_reads_are_dropped_with_their_initializers():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from onnx_lineage.model.graph import drop_unused
    w16 = numpy_helper.from_array(np.ones((4, 4), np.float16), "w16")
    nodes = [helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT),  # fed instead now
             helper.make_node("Identity", ["w"], ["w_again"]),
             helper.make_node("MatMul", ["x", "fed"], ["y"])]
    graph = helper.make_graph(nodes, "g", [], [], [w16])
    graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
    drop_unused(graph)
    assert [n.op_type for n in graph.node] == ["MatMul"] and not graph.initializer


def test_a_weight_assembled_from_slices_is_a_constant():
    """An LSTM's gates reordered into ONNX's order by Slice and Concat of one initializer (as
    the shipped voice-activity detector's exporter writes them), then gathered and unsqueezed."""
    import numpy as np
    from onnx import helper, numpy_helper

    from onnx_lineage.model.graph import GraphIndex
    w = np.arange(24, dtype=np.float32).reshape(8, 3)
    inits = [numpy_helper.from_array(w, "w")] + [
        numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
        (("s0", [0]), ("e0", [4]), ("s1", [4]), ("e1", [8]), ("ax", [0]), ("idx", [2, 0]))]
    nodes = [helper.make_node("Slice", ["w", "s0", "e0", "ax"], ["lo"]),
             helper.make_node("Slice", ["w", "s1", "e1", "ax"], ["hi"]),
             helper.make_node("Concat", ["hi", "lo"], ["swapped"], axis=0),
             helper.make_node("Gather", ["swapped", "idx"], ["picked"], axis=1),
             helper.make_node("Unsqueeze", ["picked", "ax"], ["W"])]
    graph = helper.make_graph(nodes, "g", [], [], inits)
    value = GraphIndex(graph).constant("W").value
    np.testing.assert_array_equal(value, np.concatenate([w[4:], w[:4]])[:, [2, 0]][None])
