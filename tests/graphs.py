"""Small shared test models: a detector's branches wrapped in an If, and variants of the
committed stateful detector."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import fixture_path


def if_model(branch: Callable[[str], onnx.GraphProto]) -> onnx.ModelProto:
    """``y = If(flag, branch("then"), branch("else"))`` on an input ``x`` of shape
    ``(n, 1, 16)``, as the shipped voice-activity detector keeps its network (one branch per
    sample rate). ``branch(name)`` builds a branch that reads ``x`` and writes ``{name}_y``."""
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=branch("then"),
                          else_branch=branch("else"))], "vad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 16]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def branch_graph(name: str, nodes: list, weights: dict) -> onnx.GraphProto:
    """One If branch of ``nodes`` writing ``{name}_y``, its ``weights`` as float32
    initializers."""
    return helper.make_graph(
        nodes, name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()])


def vad_variant(tmp_path, name: str, edit: Callable | None = None, noise: float = 0.0,
                fresh: bool = False, seed: int = 7):
    """The committed stateful detector (``torch_vad_state``) with each float32 initializer
    passed through ``edit(name, array)`` (a permutation), then drawn again at its own scale
    (``fresh``: an independent model) and given weight ``noise`` (a new release), saved to
    ``tmp_path/{name}.onnx``; its path."""
    m = onnx.load(fixture_path("torch_vad_state"))
    rng = np.random.default_rng(seed)
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32:
            continue
        if edit is not None:
            a = edit(t.name, a)
        if fresh:
            a = rng.normal(size=a.shape) * a.std()
        a = a + noise * a.std() * rng.normal(size=a.shape)
        t.CopyFrom(numpy_helper.from_array(a.astype(np.float32), t.name))
    path = tmp_path / f"{name}.onnx"
    onnx.save(m, path)
    return path
