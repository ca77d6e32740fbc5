"""What a command will hold, estimated from the graph before it starts, and the one-line refusal
that names the figure and what fits."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage import memory
from onnx_lineage.model.footprint import (Footprint, blend_bytes, determine_footprint,
                                          match_footprint, require, session_bytes)
from tests.conftest import fixture_path


def _graph(nodes, inits, inputs=("X",)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1, 8])
                                       for i in inputs],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def test_a_session_holds_widened_and_prepacked_weights_and_nothing_for_biases():
    w16 = np.ones((8, 6), np.float16)  # 48 values, widened by Cast: 192 bytes
    w32 = np.ones((6, 5), np.float32)  # 30 values, prepacked by MatMul: 120 bytes
    bias = np.ones(5, np.float32)  # read by Add: no copy
    model = _graph([helper.make_node("Cast", ["w16"], ["w16f"], to=TensorProto.FLOAT),
                    helper.make_node("MatMul", ["X", "w16f"], ["h"]),
                    helper.make_node("MatMul", ["h", "w32"], ["z"]),
                    helper.make_node("Add", ["z", "bias"], ["Y"])],
                   {"w16": w16, "w32": w32, "bias": bias})
    assert session_bytes(model) == 4 * 48 + 4 * 30
    assert blend_bytes(model) == 4 * (48 + 30 + 5)  # every parameter in float32


def test_block_quantized_weights_are_held_as_stored():
    blob = np.zeros((6, 1, 4), np.uint8)  # N=6 columns, one block of 8 values: 4 bytes each
    scales = np.ones(6, np.float32)
    node = helper.make_node("MatMulNBits", ["X", "blob", "scales"], ["Y"], domain="com.microsoft",
                            K=8, N=6, bits=4, block_size=8)
    model = _graph([node], {"blob": blob, "scales": scales})
    assert session_bytes(model) == 24 + 4 * 6  # the blocks' bytes, and the scales'


def test_require_names_the_figure_its_largest_part_and_what_fits():
    fp = Footprint((("the blend buffer", 3 * 1024**3), ("a batch of values", 1024**2)))
    small = Footprint((("matching", 2 * 1024**2),))
    with memory.limited("1G"):
        require(small, "matching")  # within the budget: nothing said
        with pytest.raises(memory.MemoryBudgetError) as err:
            require(fp, "determine of a.onnx and b.onnx", (("`match`", small),))
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith("determine of a.onnx and b.onnx needs about 3.0 GiB (the blend buffer "
                           "3.0 GiB), over the memory budget of 1.0 GiB")
    assert line.endswith("; `match` needs about 2.0 MiB and fits")
    with memory.limited("1M"), pytest.raises(memory.MemoryBudgetError,
                                             match="nothing smaller this command can do fits"):
        require(fp, "determine", (("`match`", small),))


def test_determine_is_refused_up_front_with_what_fits(tmp_path):
    """Under a budget between what matching and what the sweep need, ``determine`` stops before
    reading a weight, says so in one line, and ``match`` runs."""
    from onnx_lineage.analyses.determination import determine
    from onnx_lineage.matching import match
    from onnx_lineage.model.loading import load_model
    path = fixture_path("torch_cnn_bn")
    proto = load_model(path).proto
    need = determine_footprint(proto, proto, 1000).total
    fits = match_footprint(proto, proto).total
    assert fits < need
    budget = int((fits + need) / 2)
    with pytest.raises(memory.MemoryBudgetError) as err:
        determine(path, path, max_memory=budget)
    assert "determine of torch_cnn_bn.onnx and torch_cnn_bn.onnx needs about" in str(err.value)
    assert "`match` (the data-free tests) needs about" in str(err.value)
    with memory.limited(budget):
        assert match(path, path).pairs


def test_the_cli_refuses_in_one_line_with_exit_code_1():
    from tests.cli.test_cli import cli
    r = cli("inspect", fixture_path("torch_cnn_bn"), "--max-memory", "1K")
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1 and r.stdout == ""
    assert len(lines) == 1 and "inspect of torch_cnn_bn.onnx needs about" in lines[0]


def test_a_4bit_export_counts_its_weights_dequantized_and_match_says_so():
    """extract_layers holds MatMulNBits weights dequantized in float32 (a 7B model's 4-bit
    export: 26 GiB, which was killed before this was counted): ``match`` stops up front."""
    from onnx_lineage.model.footprint import dequantized_bytes
    blob = np.zeros((6, 1, 4), np.uint8)
    node = helper.make_node("MatMulNBits", ["X", "blob", "scales"], ["Y"], domain="com.microsoft",
                            K=8, N=6, bits=4, block_size=8)
    model = _graph([node], {"blob": blob, "scales": np.ones(6, np.float32)})
    assert dequantized_bytes(model) == 4 * 8 * 6
    plain = _graph([helper.make_node("MatMul", ["X", "w"], ["Y"])],
                   {"w": np.ones((8, 6), np.float32)})
    assert dequantized_bytes(plain) == 0
    fp = match_footprint(plain, model)
    assert dict(fp.parts)["the quantized weights dequantized"] == 4 * 8 * 6
    with memory.limited(int(fp.total) - 1), pytest.raises(memory.MemoryBudgetError,
                                                          match="matching a and b needs about"):
        require(fp, "matching a and b")
