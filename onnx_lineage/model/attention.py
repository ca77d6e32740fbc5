"""Attention blocks: the unit axes inside them that a permutation can move without changing the
function.

In ``softmax(q k^T / s) v`` followed by an output projection ``o``, the scores are unchanged when
the same permutation reorders the dimensions of q and of k within a head, and the output is
unchanged when one permutation reorders the dimensions of v within a head and the matching input
columns of o. :func:`attention` finds these blocks in a graph: two dense layers whose outputs meet
as the two operands of a ``MatMul`` (the scores), reached only through reshapes, transposes, casts
and scaling by a scalar constant, and the dense layer whose output is the right operand of the
``MatMul`` that the scores (after the softmax) feed, with the dense layer that reads the result.
Anything else on the way from q or k to the scores (a rotary embedding multiplies each dimension
by its own sine and cosine) breaks the symmetry: no block. The number of heads comes from the
``Reshape`` that splits the last axis into ``(heads, head_dim)`` (its target shape a constant or
a ``Concat`` with constant heads or head size); without such a reshape, one head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnx_lineage.model.graph import GraphIndex
from onnx_lineage.model.ops import dims_of, from_shapes
from onnx_lineage.model.parameters import Layer

#: Ops that move or relabel axes, or change the dtype, without mixing a head's dimensions.
_PASS = {"Reshape", "Transpose", "Cast", "Identity", "Squeeze", "Unsqueeze"}
#: Ops between the scores and the softmax's output that act elementwise on the scores.
_SCORE_OPS = {"Div", "Mul", "Add", "Sub", "Softmax", "Where", "Cast", "Dropout", "Identity",
              "Clip", "Max", "Min"}


@dataclass(frozen=True)
class Attention:
    """One attention block, by layer index.

    Attributes
    ----------
    q, k : int
        The dense layers whose outputs give the scores.
    v : int or None
        The dense layer whose output the scores weigh.
    o : int or None
        The dense layer that reads the weighted values (None: they are added to a stream as
        they are, and v's units belong to that stream).
    heads : int
    head_dim : int
    """

    q: int
    k: int
    v: int | None
    o: int | None
    heads: int
    head_dim: int


def attention(model: onnx.ModelProto, layers: list[Layer]) -> list[Attention]:
    """The attention blocks of the main graph whose head dimensions can be permuted."""
    g = _Graph(model)
    dense = {x.output: x for x in layers if x.kind == "dense" and not x.scope}
    found = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or any(g.is_constant(i) for i in node.input):
            continue
        (q, q_path), (k, k_path) = (_trace(g, name, dense) for name in node.input[:2])
        if q is None or k is None or q.index == k.index or q.units != k.units:
            continue
        heads = _heads(g, q_path, q.units)
        if heads is None or heads != _heads(g, k_path, k.units):
            continue
        v, o = _values(g, node.output[0], dense, heads)
        found.append(Attention(q.index, k.index, None if v is None else v.index,
                               None if o is None else o.index, heads, q.units // heads))
    return found


def _trace(g: GraphIndex, name: str, dense: dict) -> tuple[Layer | None, list]:
    """Walk back from ``name`` through axis moves and scaling by scalar constants to a dense
    layer's output: the layer (None: anything else on the way) and the reshapes passed."""
    reshapes = []
    for _ in range(32):
        if name in dense:
            return dense[name], reshapes
        node = g.producer(name)
        if node is None:
            return None, reshapes
        if node.op_type in ("Div", "Mul"):
            data = [i for i in node.input if not _scalar(g, i)]
            if len(data) != 1:  # a per-dimension factor (a rotary embedding's sin and cos)
                return None, reshapes
            name = data[0]
            continue
        if node.op_type not in _PASS:
            return None, reshapes
        if node.op_type == "Reshape":
            reshapes.append(node)
        name = node.input[0]
    return None, reshapes


def _heads(g: GraphIndex, reshapes: list, width: int) -> int | None:
    """Heads the ``width`` units were split into by ``reshapes``: read off the reshape that
    splits the last axis into ``(heads, head_dim)`` (its target's last two entries, one of which
    may be computed at run time). 1 without such a reshape; None when one cannot be read."""
    heads = 1
    for reshape in reshapes:
        target = _shape_entries(g, reshape.input[1])
        if target is None or len(target) < 2:
            return None
        h, dh = target[-2], target[-1]
        if dh == width:  # the last axis kept whole
            continue
        if isinstance(dh, int) and dh > 0 and width % dh == 0:
            heads = width // dh
        elif isinstance(h, int) and h > 0 and width % h == 0:
            heads = h
        else:
            return None
    return heads


class _Graph(GraphIndex):
    """The main graph, with its inferred dimensions computed on first need (a scale computed at
    run time from the head size)."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__(model.graph)
        self.model, self._dims, self.scalars = model, None, {}

    @property
    def dims(self) -> dict:
        if self._dims is None:
            self._dims = dims_of(self.model)
        return self._dims


def _scalar(g: GraphIndex, name: str) -> bool:
    """One value for the whole tensor: a constant, or a single value computed from shapes alone
    (``1 / sqrt(head_dim)`` read off the query's shape at run time), which scales every
    dimension alike whatever it comes to."""
    c = g.constant(name)
    if c is not None:
        return c.value.size == 1
    if not isinstance(g, _Graph):
        return False
    if name not in g.scalars:
        values = from_shapes(g, name, g.dims)
        g.scalars[name] = bool(values) and all(v.size == 1 for v in values)
    return g.scalars[name]


def _shape_entries(g: GraphIndex, name: str) -> list | None:
    """A shape tensor's entries: ints where constant, None where computed (one None per computed
    part of a ``Concat``, whatever its length: only the last entries are read, and they are
    right whenever the last parts are constant)."""
    c = g.constant(name)
    if c is not None:
        return [int(v) for v in np.asarray(c.value).reshape(-1)]
    node = g.producer(name)
    if node is None or node.op_type != "Concat":
        return None
    out = []
    for part in node.input:
        pc = g.constant(part)
        if pc is None:
            out.append(None)
        else:
            out += [int(v) for v in np.asarray(pc.value).reshape(-1)]
    return out


def _values(g: GraphIndex, scores: str, dense: dict, heads: int
            ) -> tuple[Layer | None, Layer | None]:
    """From the scores forward through the softmax to the ``MatMul`` that weighs the values: the
    dense layer behind its right operand (v, split into the same heads) and the dense layer that
    reads its result (o). None for either where the path holds anything else."""
    name = scores
    for _ in range(16):
        cons = g.consumers_of(name)
        if len(cons) != 1:
            return None, None
        node = cons[0]
        if node.op_type == "MatMul" and node.input[0] == name:
            v, path = _trace(g, node.input[1], dense)
            if v is None or _heads(g, path, v.units) != heads:
                return None, None
            o = _forward(g, node.output[0], dense)
            return v, (o if o is not None and o.weight.shape[1] == v.units else None)
        if node.op_type not in _SCORE_OPS:
            return None, None
        name = node.output[0]
    return None, None


def _forward(g: GraphIndex, name: str, dense: dict) -> Layer | None:
    """The dense layer reached from ``name`` through axis moves only (None: anything else)."""
    readers = {x.input: x for x in dense.values()}
    for _ in range(16):
        if name in readers:
            return readers[name]
        cons = g.consumers_of(name)
        if len(cons) != 1 or cons[0].op_type not in _PASS:
            return None
        name = cons[0].output[0]
    return None
