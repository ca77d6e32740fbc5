"""Grouped convolutions: channels permute within their groups; whole groups move as blocks with
the channels that feed them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.analyses.determination import determine
from onnx_lineage.data import Dataset
from onnx_lineage.matching.classes import symmetry_classes
from onnx_lineage.matching import match
from onnx_lineage.matching.permutation import block_assignment

GROUPS, C = 2, 8


#: The first conv's channels in a new order that swaps the two blocks the grouped conv reads
#: (new block 0 = old block 1, channels 2, 0, 3, 1 of it; new block 1 = old block 0 as 1, 3, 0, 2).
BLOCKS = np.array([6, 4, 7, 5, 1, 3, 0, 2])


def grouped_model(seed=0, perm=None, noise=0.0, blocks=False) -> onnx.ModelProto:
    """Conv 1->8, ReLU, grouped Conv 8->8 (2 groups of 4), ReLU, Conv 1x1 8->12, ReLU, global
    pooling, dense 12->10. ``perm`` (8,) reorders the grouped conv's output channels;
    ``blocks`` reorders the first conv's channels by :data:`BLOCKS`, the grouped conv's groups
    swapped to follow them (the same function)."""
    rng, jitter = np.random.default_rng(seed), np.random.default_rng(seed + 50)

    def w(*shape):
        x = rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))
        return (x + noise * jitter.normal(size=shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    p = {"c0": w(C, 1, 3, 3), "c0_b": w(C, 1).ravel(), "g": w(C, C // GROUPS, 3, 3),
         "g_b": w(C, 1).ravel(), "c1": w(12, C, 1, 1), "c1_b": w(12, 1).ravel(),
         "d": w(10, 12), "d_b": w(10, 1).ravel()}
    if blocks:
        p["c0"], p["c0_b"] = p["c0"][BLOCKS], p["c0_b"][BLOCKS]
        p["g"] = np.concatenate([p["g"][4:][:, [2, 0, 3, 1]], p["g"][:4][:, [1, 3, 0, 2]]])
        swap = np.r_[4:8, 0:4]
        p["g_b"], p["c1"] = p["g_b"][swap], p["c1"][:, swap]
    if perm is not None:
        p["g"], p["g_b"], p["c1"] = p["g"][perm], p["g_b"][perm], p["c1"][:, perm]
    nodes = [helper.make_node("Conv", ["x", "c0", "c0_b"], ["y0"], pads=[1] * 4, name="c0"),
             helper.make_node("Relu", ["y0"], ["r0"]),
             helper.make_node("Conv", ["r0", "g", "g_b"], ["y1"], pads=[1] * 4, group=GROUPS,
                              name="g"),
             helper.make_node("Relu", ["y1"], ["r1"]),
             helper.make_node("Conv", ["r1", "c1", "c1_b"], ["y2"], name="c1"),
             helper.make_node("Relu", ["y2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "d", "d_b"], ["logits"], transB=1, name="d")]
    graph = helper.make_graph(nodes, "grouped",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
                              [numpy_helper.from_array(v, k) for k, v in p.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


WITHIN = np.array([2, 0, 3, 1, 7, 5, 4, 6])  # each group's channels shuffled among themselves


def test_a_permutation_within_groups_is_undone(save, same_function):
    a, b = save("a", grouped_model()), save("b", grouped_model(perm=WITHIN))
    same_function(a, b)
    m = match(a, b)
    assert all(p["cosine"] > 0.9999 for p in m.pairs)
    classes = symmetry_classes(m)
    assert [(c.name, c.width, c.span) for c in classes if c.rows == (1,)] == [
        ("layer 1 channels group 0", 4, (0, 4)), ("layer 1 channels group 1", 4, (4, 8))]


def test_groups_reordered_as_blocks_are_undone(save, same_function):
    a, b = save("a", grouped_model()), save("b", grouped_model(perm=WITHIN, blocks=True))
    same_function(a, b)
    m = match(a, b)
    assert [round(p["cosine"], 4) for p in m.pairs] == [1.0] * 4
    assert not m.limits
    # the feeding conv's channels move in blocks: not a class of the tests
    assert not [c for c in symmetry_classes(m) if c.rows == (0,)]


def test_block_assignment_keeps_blocks_whole():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(12, 12)) * 0.1
    truth = np.array([9, 11, 10, 1, 0, 2, 5, 3, 4, 7, 6, 8])  # blocks of 3: 0->3, 1->0, 2->1, 3->2
    sim[np.arange(12), truth] += 1.0
    assert block_assignment(sim, 4).tolist() == truth.tolist()
    # blocks that cannot move (the groups' outputs are fixed): each assigned within its place
    stay = block_assignment(sim, 4, movable=False)
    assert (stay // 3).tolist() == (np.arange(12) // 3).tolist()
    assert sorted(stay.tolist()) == list(range(12))


@pytest.mark.parametrize("seed, related", [(0, True), (3, False)])
def test_grouped_fine_tunes_are_related_strangers_are_not(save, seed, related):
    a = save("a", grouped_model())
    b = save("b", grouped_model(seed, perm=WITHIN, noise=0.1 if related else 0.0,
                                blocks=related))
    x = np.random.default_rng(0).random((200, 1, 8, 8)).astype(np.float32)
    r = determine(a, b, Dataset({"x": x}), seed=0)
    assert (r.verdict == "related") is related
