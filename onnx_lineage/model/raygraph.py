"""A model whose query points are built inside its own graph, on its own device.

A boundary search queries ``clip(x[origin[r]] + t[r] u[r], lo, hi)`` for its active rays ``r``,
every step. Written on the host, that is ``k x d`` floats per step to write and, on a GPU, to copy
over; for a small model on a GPU it costs more than the forward pass itself. The ray model
prepends those few operations to the model:

    rows   = Gather(origin, active)            (k,)
    points = Min(Max(Gather(x, rows) + Gather(u, active) * t, lo), hi)     (k, d)
    input  = Reshape(points, (-1,) + row_shape)

so the data ``x``, the directions ``u`` and their origins stay on the device for a whole search
(bound once, see :meth:`Runner.place`) and each step sends only ``active`` (k int64) and ``t``
(k float32). The operations are the ones :func:`kernels.boundary.ray_points` does, in the same
order and precision, so the points are the same to the bit.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_P = "onnx_lineage.rays/"
#: Inputs fixed for a search (fed whole, kept on the device).
X, U, ORIGIN, LO, HI = (f"{_P}{n}" for n in ("x", "u", "origin", "lo", "hi"))
STATIC = frozenset({X, U, ORIGIN, LO, HI})
#: Inputs of every step, one row per active ray: ray indices (k,) int64, ``t`` (k, 1) float32.
ACTIVE, T = f"{_P}active", f"{_P}t"

#: Max and Min broadcast from opset 8 on.
MIN_OPSET = 8


def ray_model(model: onnx.ModelProto, input_name: str, row_shape: tuple) -> onnx.ModelProto | None:
    """``model`` with its float input ``input_name`` computed from rays, or None if it cannot be.

    Parameters
    ----------
    model : onnx.ModelProto
    input_name : str
        The input the rays move; its rows have shape ``row_shape`` (d values when flattened).
    row_shape : tuple of int

    Returns
    -------
    onnx.ModelProto or None
        None when the model's default-domain opset is below :data:`MIN_OPSET`, the input is not
        float32 (or also an initializer), or a name of the prefix is taken.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    target = next((i for i in graph.input if i.name == input_name), None)
    if (opset < MIN_OPSET or target is None
            or target.type.tensor_type.elem_type != TensorProto.FLOAT
            or any(i.name == input_name for i in graph.initializer)
            or any(n.startswith(_P) for n in _names(graph))):
        return None
    d = int(np.prod(row_shape, dtype=np.int64))
    flat = len(row_shape) == 1
    nodes = [
        helper.make_node("Gather", [ORIGIN, ACTIVE], [f"{_P}rows"], axis=0),
        helper.make_node("Gather", [X, f"{_P}rows"], [f"{_P}xo"], axis=0),
        helper.make_node("Gather", [U, ACTIVE], [f"{_P}ur"], axis=0),
        helper.make_node("Mul", [f"{_P}ur", T], [f"{_P}step"]),
        helper.make_node("Add", [f"{_P}xo", f"{_P}step"], [f"{_P}raw"]),
        helper.make_node("Max", [f"{_P}raw", LO], [f"{_P}above"]),
        helper.make_node("Min", [f"{_P}above", HI], [input_name if flat else f"{_P}points"]),
    ]
    inits = []
    if not flat:
        shape = numpy_helper.from_array(np.array((-1,) + tuple(row_shape), np.int64), f"{_P}shape")
        inits.append(shape)
        nodes.append(helper.make_node("Reshape", [f"{_P}points", shape.name], [input_name]))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    kept = [i for i in g.input if i.name != input_name]
    del g.input[:]
    g.input.extend(kept + [
        helper.make_tensor_value_info(X, TensorProto.FLOAT, ["points", d]),
        helper.make_tensor_value_info(U, TensorProto.FLOAT, ["rays", d]),
        helper.make_tensor_value_info(ORIGIN, TensorProto.INT64, ["rays"]),
        helper.make_tensor_value_info(LO, TensorProto.FLOAT, [d]),
        helper.make_tensor_value_info(HI, TensorProto.FLOAT, [d]),
        helper.make_tensor_value_info(ACTIVE, TensorProto.INT64, ["queries"]),
        helper.make_tensor_value_info(T, TensorProto.FLOAT, ["queries", 1]),
    ])
    g.initializer.extend(inits)
    body = list(g.node)
    del g.node[:]
    g.node.extend(nodes + body)
    return out


def _names(graph: onnx.GraphProto):
    """Every name the main graph defines or reads."""
    yield from (i.name for i in graph.input)
    yield from (i.name for i in graph.initializer)
    for n in graph.node:
        yield from n.input
        yield from n.output
