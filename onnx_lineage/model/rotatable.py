"""Which residual streams a rotation of their coordinates leaves the same function.

A residual stream (:mod:`.streams`) can be multiplied by any orthogonal ``R`` of shape
``(width, width)`` (SliceGPT, QuaRot): ``x -> R x``, that is ``W -> R W`` and ``b -> R b`` at
every layer that writes it and ``W -> W R^T`` at every layer that reads it. The function stays
the same only where everything else the stream passes through commutes with ``R``:

* additions of stream tensors (the residual joins);
* products with a scalar constant;
* maps along other axes: a mean over positions, a selection of positions, a squeeze;
  attention's mixing of rows (the stream as the right operand of a product of two computed
  tensors);
* a division of each row by its root mean square ``sqrt(mean(x^2) + eps)`` (``R`` keeps
  norms): ``RMSNormalization`` and ``SimplifiedLayerNormalization`` with a scale that is the same
  for every unit (a unit gain, or one folded into the next linears) and no bias, or the same
  written as ops (``Pow``/``ReduceMean``/``Add``/``Sqrt``/``Div``, with no ``Mul`` by a gain or
  a gain of one value).

A per-unit gain does not commute (``R diag(g) != diag(g) R``), nor a LayerNorm's mean over the
units (its centring projects out the all-ones vector, which ``R`` moves), nor a constant added
to the stream, nor an elementwise nonlinearity applied to the stream itself: a stream with any of
these is no candidate for a rotation, and :func:`rotation_blocker` says why.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnx_lineage.model import ops
from onnx_lineage.model.graph import GraphIndex, attr
from onnx_lineage.model.ops import SHAPE_ONLY
from onnx_lineage.model.parameters import Layer, is_square
from onnx_lineage.model.streams import Stream

#: Normalisations that divide each row by its root mean square (no centring).
RMS_OPS = ("RMSNormalization", "SimplifiedLayerNormalization", "RMSNormalization (as ops)")
#: Ops that move values along other axes than the last, which the walk follows when
#: :func:`.ops.passage` keeps the units on the last axis.
_ALONG_OTHER_AXES = {"Identity", "Dropout", "Cast", "Gather", "Slice", "Squeeze", "Unsqueeze",
                     "Expand", "Tile", "ReduceMean", "ReduceSum"}


def plain_rms(layer: Layer) -> bool:
    """An RMS normalisation whose scale is one value for every unit and whose bias, if any, is
    zero: it commutes with any rotation of the units."""
    w = np.asarray(layer.params["weight"], np.float64).reshape(-1)
    bias = layer.params.get("bias")
    return (layer.op in RMS_OPS and w.size > 0 and bool(np.all(w == w[0]))
            and (bias is None or not np.any(bias)))


def rotation_blocker(model: onnx.ModelProto, layers: list[Layer], stream: Stream,
                     dims: dict) -> str:
    """Why rotating ``stream``'s coordinates would change ``model``'s function; empty when it
    would not (see the module docstring).

    Parameters
    ----------
    model : onnx.ModelProto
    layers : list of Layer
        The model's canonical layers (their indices are the stream's).
    stream : Stream
    dims : dict of str to tuple
        Shapes by tensor name (:func:`.ops.dims_of`).
    """
    by_index = {x.index: x for x in layers}
    members = [by_index[i] for i in stream.members]
    if stream.reason or stream.pinned or not stream.residual:
        return stream.reason or stream.pinned or "not a residual stream"
    if stream.spans or stream.tiles or any(x.scope or x.kind != "dense" and x.kind not in (
            "embedding", "layernorm") for x in members):
        return "a member reads or writes it in blocks, in a subgraph or as a convolution"
    odd = [x for x in (by_index[i] for i in stream.followers) if not plain_rms(x)]
    if odd:
        return (f"layer {odd[0].index} ({odd[0].op}) normalises it with a gain per unit or a "
                "mean over its units")
    g = GraphIndex(model.graph)
    owned = {n for x in members for n in (x.node, *x.internal)}
    passes = {by_index[i].input: by_index[i].output for i in stream.followers}
    seen = {by_index[i].output for i in stream.writers}
    todo, joins = list(seen), []
    while todo:
        t = todo.pop()
        if t in g.graph_outputs:
            return "it is an output of the model"
        nxt = [passes[t]] if t in passes else []
        for node in g.consumers_of(t):
            if node.name in owned or node.op_type in SHAPE_ONLY:
                continue
            out, why = _step(g, node, t, dims)
            if why:
                return why
            nxt += out
            joins += [node] if node.op_type in ("Add", "Sum", "Sub") else []
        todo += [n for n in nxt if n not in seen]
        seen.update(nxt)
    strays = [n for node in joins for n in node.input if n and n not in seen]
    return f"an Add joins it to {strays[0]}, which is no tensor of the stream" if strays else ""


def _step(g: GraphIndex, node: onnx.NodeProto, t: str, dims: dict) -> tuple[list, str]:
    """Where ``node``, reading stream tensor ``t``, carries the stream (its outputs that hold
    it, in the stream's coordinates), or why it does not commute with a rotation."""
    op, others = node.op_type, [n for n in node.input if n and n != t]
    if op in ("Add", "Sum", "Sub"):
        if any(g.is_constant(n) for n in others):
            return [], f"a constant is added to it ({node.name})"
        return [node.output[0]], ""
    if op in ("Mul", "Div") and len(others) == 1 and node.input[0] == t:
        scalar = (c := g.constant(others[0])) is not None and np.asarray(c.value).size == 1
        if scalar or _row_norm(g, others[0], dims):
            return [node.output[0]], ""
        return [], f"{op} {node.name} scales it by something else than a scalar or its RMS"
    if is_square(g, node) and all(_sums_last_axis(g, c, dims) for c in
                                  g.consumers_of(node.output[0])):
        return [], ""  # its squares summed over the units: the same after any rotation
    if op == "MatMul" and len(node.input) == 2 and node.input[1] == t \
            and not g.is_constant(node.input[0]):
        return [node.output[0]], ""  # rows mixed (attention): each row stays in the stream
    if op in _ALONG_OTHER_AXES and node.input[0] == t:
        how = ops.passage(g, node, t, -1, dims)
        if how.keeps and how.axis in (-1, None):
            return [node.output[0]], ""
    return [], f"read by {op} ({node.name}), which a rotation of its units does not commute with"


def _sums_last_axis(g: GraphIndex, node: onnx.NodeProto, dims: dict) -> bool:
    """A ReduceMean or ReduceSum over the last axis alone."""
    if node.op_type not in ("ReduceMean", "ReduceSum"):
        return False
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        c = g.constant(node.input[1])
        axes = None if c is None else [int(a) for a in np.asarray(c.value).reshape(-1)]
    rank = len(dims.get(node.input[0]) or ())
    return axes is not None and len(axes) == 1 and (axes[0] == -1 or rank > 0
                                                    and axes[0] == rank - 1)


def _row_norm(g: GraphIndex, name: str, dims: dict, depth: int = 8) -> bool:
    """A tensor computed from the sums (means) of squares of stream rows over their units by
    elementwise ops with constants: the same after any rotation of the units (an RMS norm's
    ``sqrt(mean(x^2) + eps)``)."""
    node = g.producer(name)
    if node is None or depth == 0:
        return g.is_constant(name)
    if node.op_type in ("ReduceMean", "ReduceSum"):
        square = g.producer(node.input[0])
        return square is not None and is_square(g, square) and _sums_last_axis(g, node, dims)
    if node.op_type in ops.UNARY or node.op_type in ops.BINARY:
        return all(g.is_constant(n) or _row_norm(g, n, dims, depth - 1)
                   for n in node.input if n)
    return False
