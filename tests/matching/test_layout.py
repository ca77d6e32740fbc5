"""Layouts of the same convolution weights: a Conv1D against a Conv2D of kernel (k, 1), height and
width swapped (a package that feeds its images transposed), with the dense layer after them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.matching import match
from onnx_lineage.matching.layout import kernel_layout, swap_flattened, swapped_by_weights


def test_layouts_by_shape():
    assert kernel_layout((8, 1, 5), (8, 1, 5, 1)) == "squeezed"
    assert kernel_layout((8, 4, 3, 2), (8, 4, 2, 3)) == "swapped"
    assert kernel_layout((8, 4, 3, 3), (8, 4, 3, 3)) == "same"
    assert kernel_layout((8, 4, 3, 2), (4, 8, 2, 3)) is None
    assert kernel_layout((8, 4, 5), (8, 4, 3, 1)) is None


def test_a_swap_of_square_kernels_is_read_from_their_moments():
    rng = np.random.default_rng(0)
    # kernels with a direction (edges along one axis), as trained first layers have
    w = rng.normal(size=(16, 3, 3, 3)) * np.array([1.0, 0.2, 0.05])[None, None, :, None]
    perm = rng.permutation(16)
    assert swapped_by_weights(w, np.swapaxes(w, 2, 3)[perm]) is True
    assert swapped_by_weights(w, w[perm]) is False
    iso = rng.normal(size=(16, 3, 3, 3))
    assert swapped_by_weights(iso, rng.normal(size=(16, 3, 3, 3))) is None


def test_swapping_a_flattened_square_map_twice_gives_it_back():
    w = np.arange(2 * 3 * 16, dtype=np.float32).reshape(2, 48)
    for last in (False, True):
        once = swap_flattened(w, 3, 16, last)
        assert not np.array_equal(once, w)
        np.testing.assert_array_equal(swap_flattened(once, 3, 16, last), w)


def _net(swap: bool, conv1d: bool = False, seed: int = 0) -> onnx.ModelProto:
    """``Conv (1->6, 3x2) -> Relu -> Conv (6->5, 3x3) -> Relu -> Flatten -> Gemm`` on 6x6 images;
    ``swap``: the same weights for images fed transposed (kernels and flatten order swapped).
    ``conv1d``: instead a ``Conv1d (1->6, k 3) -> Relu -> Conv1d (6->5, k 3)`` on 8 steps, stored
    as 2-D convolutions of kernel (k, 1) when False."""
    rng = np.random.default_rng(seed)
    if conv1d:
        w0, w1 = rng.normal(size=(6, 1, 3)), rng.normal(size=(5, 6, 3)) / 4
        side, shape = 4, ["n", 1, 8]
        fc = rng.normal(size=(3, 5 * 4)) / 5
        if not swap:  # stored as Conv2d on (N, 1, 8, 1)
            w0, w1, shape = w0[..., None], w1[..., None], ["n", 1, 8, 1]
    else:
        w0 = rng.normal(size=(6, 1, 3, 2)) * np.array([1.0, 0.3])
        w1 = rng.normal(size=(5, 6, 3, 3)) * np.array([1.0, 0.5, 0.1])[:, None] / 4
        side, shape = 3, ["n", 1, 6, 6]
        fc = rng.normal(size=(3, 5 * 9)) / 5
        if swap:
            w0, w1 = np.swapaxes(w0, 2, 3), np.swapaxes(w1, 2, 3)
            fc = swap_flattened(fc, 5, 9, False)
    del side
    tensors = {"w0": w0, "b0": rng.normal(size=6), "w1": w1, "b1": rng.normal(size=5),
               "fc": fc, "fb": rng.normal(size=3)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"]),
             helper.make_node("Relu", ["c0"], ["a0"]),
             helper.make_node("Conv", ["a0", "w1", "b1"], ["c1"]),
             helper.make_node("Relu", ["c1"], ["a1"]),
             helper.make_node("Flatten", ["a1"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in tensors.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("conv1d", [False, True])
def test_the_same_weights_in_another_layout_are_paired_and_put_in_a_s(tmp_path, conv1d):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(_net(swap=False, conv1d=conv1d), a)
    onnx.save(_net(swap=True, conv1d=conv1d), b)
    m = match(str(a), str(b))
    assert len(m.pairs) == 3 and all(p["cosine"] > 0.9999 for p in m.pairs)
    said = " ".join(m.transforms)
    assert ("size-1 spatial axes" in said) if conv1d else ("height and width swapped" in said
                                                           and "1 dense layer" in said)


def test_an_unrelated_model_is_not_swapped(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(_net(swap=False), a)
    onnx.save(_net(swap=False, seed=5), b)
    m = match(str(a), str(b))
    assert not any("swapped" in t for t in m.transforms)
