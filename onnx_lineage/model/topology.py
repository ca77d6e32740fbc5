"""How parametric layers feed each other: the chains along which hidden units can be permuted.

A dense or conv layer's output units can be permuted (and, around positively homogeneous
activations, rescaled) without changing the function, provided the permutation is carried to
everything that reads them: BatchNorm/LayerNorm parameters on the way and the input side of the next
parametric layer. :func:`links` follows each layer's output through every op that the op registry
(:func:`.ops.passage`) says carries the units, through transposes and reshapes that keep them whole,
into one block of a ``Concat`` on their axis, and through a GroupNormalization (within its
groups), and records where it lands. Anything else on the way (a residual ``Add`` of two
activations, a graph output, several readers) ends the chain: that layer's units are left in place
and the match result says so (residual streams and gated units: :mod:`.streams`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import onnx

from onnx_lineage.model import ops
from onnx_lineage.model.graph import GraphIndex, attr
from onnx_lineage.model.ops import POSITIVE_HOMOGENEOUS, SHAPE_ONLY
from onnx_lineage.model.parameters import PER_UNIT, Layer

_RESHAPING = {"Flatten", "Reshape"}
#: Recurrent layers: their input weight's last axis reads the units.
RECURRENT = ("lstm", "gru", "rnn")


@dataclass(frozen=True)
class Link:
    """Where the units of one layer go.

    Attributes
    ----------
    next : int or None
        Index of the parametric layer that reads them (None: the chain ends).
    followers : tuple of int
        Layers on the way whose parameters have one slice per unit and follow a permutation:
        BatchNorm/LayerNorm, and depthwise convolutions (one filter per channel).
    homogeneous : bool
        Every op on the way is positively homogeneous (per-unit rescaling is allowed).
    spatial : int
        Inputs of ``next`` per unit (``H*W`` when a conv output is flattened into a dense layer).
    ops : tuple of str
        Op types on the way, for reports.
    reason : str
        Why the chain ends, when it does.
    channels_last : bool
        The units were moved last (``Transpose`` to channels-last, as tf2onnx exports of Keras
        CNNs do) before the flatten: ``next`` reads column ``s * units + u``. For a ``next``
        whose weight has more than two axes: it reads the units on its last axis (a recurrent
        layer's ``W``), not on axis 1 (a convolution's).
    next_groups : int
        ``next`` is a grouped convolution with this many groups.
    next_span : tuple of (int, int), or ()
        The units were concatenated with other tensors on their axis: ``next`` reads them as its
        input channels ``next_span[0]:next_span[1]``.
    groups : int
        A GroupNormalization on the way: the units stay permutable only within this many equal
        blocks (its groups).
    """

    next: int | None
    followers: tuple = ()
    homogeneous: bool = True
    spatial: int = 1
    ops: tuple = ()
    reason: str = ""
    channels_last: bool = False
    next_groups: int = 1
    next_span: tuple = ()
    groups: int = 1


@dataclass
class _Walk:
    followers: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    homogeneous: bool = True
    reshaped: bool = False
    channels_last: bool = False
    blocks: list = field(default_factory=list)  # Concats on the unit axis: (sizes, our input)
    groups: int = 1  # GroupNormalizations on the way: the units permute within these blocks
    rank: int | None = None  # of the tensor in hand, while no op on the way has changed it

    def link(self, nxt: Layer, **reading) -> Link:
        """The link to ``nxt``, with what the walk met on the way and how ``nxt`` reads the
        units (``spatial``, ``channels_last``, ``next_groups``, ``next_span``)."""
        return Link(nxt.index, tuple(self.followers), self.homogeneous, ops=tuple(self.ops),
                    groups=self.groups, **reading)


class _Dims:
    """The graph's inferred dimensions, computed on first use (most chains never need them);
    none for a subgraph (``model`` None); ``known``: computed already by the caller."""

    def __init__(self, model: onnx.ModelProto | None, known: dict | None = None):
        self.model, self.dims = model, known

    def get(self) -> dict:
        if self.dims is None:
            self.dims = ops.dims_of(self.model) if self.model is not None else ops.Dims()
        return self.dims


def links(model: onnx.ModelProto, layers: list[Layer], dims: dict | None = None,
          graphs: dict | None = None) -> dict[int, Link]:
    """Link of every dense/conv layer (see :class:`Link`), in the main graph and in subgraphs
    (If branches, Loop bodies: a chain stays within its graph, whose outputs end it). Subgraphs
    are walked without inferred shapes, so ops that need them stop their units there. ``dims``:
    the main graph's (:func:`.ops.dims_of`), ``graphs`` its :func:`scope_graphs`, where the
    caller has them."""
    result = {}
    for scope, g in (scope_graphs(model) if graphs is None else graphs).items():
        mine = [x for x in layers if x.scope == scope]
        if not any(x.kind in ("dense", "conv") for x in mine):
            continue
        known = _Dims(model, dims) if not scope else _Dims(None)
        by_input: dict = {}
        for layer in mine:
            by_input.setdefault(layer.input, []).append(layer)
        by_node = {layer.node: layer for layer in mine}
        for layer in mine:
            if layer.kind in ("dense", "conv"):
                result[layer.index] = _follow(g, layer, by_input, by_node, known)
    return result


def scope_graphs(model: onnx.ModelProto) -> dict[str, GraphIndex]:
    """Every graph of the model by the scope its layers carry (``""``: the main graph; else the
    path of If/Loop/Scan attributes, as :func:`~.parameters.extract_layers` names it, which must
    have named the nodes first)."""
    found = {}

    def walk(graph: onnx.GraphProto, outer: GraphIndex | None, scope: str) -> None:
        g = GraphIndex(graph, outer)
        found[scope] = g
        for node in graph.node:
            for aname, sub in g.subgraphs(node):
                walk(sub, g, f"{scope}/{node.name}.{aname}" if scope else f"{node.name}.{aname}")

    walk(model.graph, None, "")
    return found


def _follow(g: GraphIndex, layer: Layer, by_input, by_node, dims: _Dims) -> Link:
    """The link of ``layer``: its output followed op by op (:func:`_through_op`) until a
    parametric layer reads it (:func:`_at_layer`; normalisations and depthwise convolutions on
    the way are followers), or something stops it."""
    walk = _Walk(homogeneous=layer.activation in ("", *POSITIVE_HOMOGENEOUS),
                 rank=layer.weight.ndim if layer.kind == "conv" else None)
    name = layer.output
    for _ in range(64):
        if name in g.graph_outputs:
            return Link(None, reason="output of the model")
        readers = by_input.get(name, [])
        cons = [c for c in g.consumers_of(name) if c.op_type not in SHAPE_ONLY]
        norm = next((x for x in readers if x.internal), None)
        if norm is not None and all(c.name in norm.internal for c in cons):
            cons = cons[:1]  # its nodes read the units as one reader: the norm
        if len(readers) == 1 and len(cons) == 1:
            link = _at_layer(readers[0], layer, walk)
            if link is not None:
                return link
            name = readers[0].output
            continue
        if len(cons) != 1:
            return Link(None, reason=f"read by {len(cons)} nodes (branch or residual)")
        node = cons[0]
        if node.name in by_node and by_node[node.name].kind not in PER_UNIT:
            return Link(None, reason=f"read as a weight by {node.op_type}")
        stopped = _through_op(g, node, name, layer, walk, dims)
        if stopped:
            return Link(None, reason=stopped)
        walk.ops.append(node.op_type)
        name = node.output[0]
    return Link(None, reason="chain too long")


def _at_layer(nxt: Layer, layer: Layer, walk: _Walk) -> Link | None:
    """The link when the units reach the parametric layer ``nxt`` (its weight reads them, or
    something about it stops them); None when ``nxt`` carries them on one per unit (a
    normalisation, a depthwise convolution: a follower) and the walk goes on after it."""
    if walk.blocks:
        return _read_in_block(nxt, layer, walk)
    if nxt.kind == "groupnorm":
        stopped = _grouped_norm(nxt, layer, walk)
        return Link(None, reason=stopped) if stopped else None
    if nxt.kind in PER_UNIT or is_depthwise(nxt, layer.units):
        walk.followers.append(nxt.index)
        walk.ops.append(nxt.op if nxt.kind != "conv" else "depthwise Conv")
        walk.homogeneous = False
        return None
    if nxt.kind in RECURRENT and layer.kind == "dense":
        if nxt.weight.shape[-1] != layer.units:
            return Link(None, reason=f"{nxt.op} input size {nxt.weight.shape[-1]} is not "
                                     f"{layer.units} units")
        # a recurrent layer's W (dirs, gates * hidden, in): the units on its last axis
        return walk.link(nxt, channels_last=True)
    if nxt.kind == "conv" and nxt.groups > 1:
        if (walk.reshaped or walk.channels_last
                or nxt.weight.shape[1] * nxt.groups != layer.units):
            return Link(None, reason=f"read by a grouped {nxt.op} layer")
        return walk.link(nxt, next_groups=nxt.groups)
    if nxt.kind not in ("dense", "conv"):
        return Link(None, reason=f"read by a {nxt.op} layer")
    units_in = nxt.weight.shape[1]
    if units_in % layer.units:
        return Link(None, reason=f"{nxt.op} input size {units_in} is not a multiple of "
                                 f"{layer.units} units")
    spatial = units_in // layer.units
    if spatial > 1 and not walk.reshaped:
        return Link(None, reason="unit count changes without a Flatten")
    if walk.channels_last and nxt.kind != "dense":
        return Link(None, reason="channels-last units read by a convolution")
    return walk.link(nxt, spatial=spatial, channels_last=walk.channels_last and spatial > 1)


def _through_op(g: GraphIndex, node: onnx.NodeProto, name: str, layer: Layer, walk: _Walk,
                dims: _Dims) -> str:
    """Carry the units through ``node`` (``walk`` updated); why they stop there, if they do.
    Reshapes and transposes move them (flattened, moved last), a Concat puts them in a block,
    every other op is as the registry says (:func:`.ops.passage`)."""
    if node.op_type in _RESHAPING and not walk.reshaped:
        kept = _reshape_keeps(node, layer, walk, dims)
        if kept is None or (kept == "first" and layer.kind != "conv"):
            walk.reshaped = True
        else:
            walk.channels_last = kept == "last" and layer.kind == "conv"
        return ""
    if (node.op_type == "Transpose" and layer.kind == "dense"
            and ops.transposed_axis(node, -1) == len(attr(node, "perm") or ()) - 1):
        return ""  # (batch, time, units) -> (time, batch, units), as before a recurrent layer
    if node.op_type == "Transpose" and not walk.reshaped and not walk.channels_last:
        where = _channels_after(node, dims) if layer.kind == "conv" else None
        if where is None:
            return "passes through a Transpose"
        walk.channels_last = where == "last"
        return ""
    if node.op_type == "Concat" and sum(1 for n in node.input if n) > 1:
        return _concatenated(node, name, layer, walk, dims)
    axis = None if walk.reshaped else -1 if walk.channels_last or layer.kind != "conv" else 1
    how = ops.passage(g, node, name, axis, dims.get(), walk.rank)
    if not how.keeps:
        return how.reason
    if how.axis != axis:  # the walk follows the units on axis 1 or last only
        return f"{node.op_type} moves the unit axis"
    walk.homogeneous = walk.homogeneous and how.homogeneous
    if node.op_type not in ops.RANK_KEEPING and not (
            node.op_type in ops.REDUCTIONS and int(attr(node, "keepdims", 1))):
        walk.rank = None
    return ""


def _grouped_norm(norm: Layer, layer: Layer, walk: _Walk) -> str:
    """Follow a conv's channels through a GroupNormalization (a follower where its scale is per
    channel; opsets 18-20 scale per group, which a permutation within groups leaves alone):
    ``walk.groups`` becomes the blocks both it and the earlier ones keep; the reason the
    channels stop, if they do (a flattened map, channels moved last, groups that do not
    divide them)."""
    if layer.kind != "conv" or walk.reshaped or walk.channels_last or walk.blocks:
        return "passes through a GroupNormalization that is not over its channels"
    groups = math.lcm(walk.groups, norm.groups)
    if layer.units % groups:
        return f"its {layer.units} channels do not split into {groups} groups"
    walk.groups = groups
    if norm.weight.shape[0] == layer.units:
        walk.followers.append(norm.index)
    walk.ops.append(norm.op)
    walk.homogeneous = False
    return ""


def _concatenated(node: onnx.NodeProto, name: str, layer: Layer, walk: _Walk,
                  dims: _Dims) -> str:
    """Follow the units into one block of a ``Concat`` on their axis (``walk.blocks`` grows; the
    blocks are placed once the reader's input size is known); the reason they stop, if they
    do: a concatenation on another axis, after a flatten, or of the units with themselves."""
    if walk.reshaped:
        return "passes through a Concat of its flattened units"
    known = dims.get()
    rank = len(known[name]) if known.get(name) else None
    axis = 1 if layer.kind == "conv" and not walk.channels_last else -1
    sizes = ops.concat_sizes(node, axis, known) if rank is not None or axis == -1 else None
    if sizes is None:
        return "passes through a Concat on another axis (or of unknown shapes)"
    walk.blocks.append((sizes, [n for n in node.input if n].index(name)))
    return ""


def _read_in_block(nxt: Layer, layer: Layer, walk: _Walk) -> Link:
    """The link to ``nxt`` when it reads the units as one block of a concatenation: a dense or
    ungrouped conv layer reading the concatenated axis directly (no flatten, no per-unit layer
    over the whole of it on the way). The blocks are placed from the last Concat back, each
    one's size on the axis the block it fills in the next."""
    if nxt.kind not in ("dense", "conv") or nxt.kind == "conv" and nxt.groups > 1:
        return Link(None, reason=f"read after a Concat by a {nxt.op} layer")
    if walk.channels_last and nxt.kind != "dense":
        return Link(None, reason="channels-last units read by a convolution")
    start, total = 0, nxt.weight.shape[1]
    for sizes, k in reversed(walk.blocks):
        span = ops.block_of(sizes, k, total)
        if span is None:
            return Link(None, reason=f"{nxt.op} input size {nxt.weight.shape[1]} is not what "
                                     "the Concat before it gives")
        start, total = start + span[0], span[1] - span[0]
    if total != layer.units:
        return Link(None, reason=f"the Concat gives {total} channels for {layer.units} units")
    return walk.link(nxt, next_span=(start, start + layer.units))


def is_depthwise(layer: Layer, channels: int) -> bool:
    """A convolution with one filter per input channel over ``channels`` channels: its channels
    are its input's, permuted together with them."""
    w = layer.weight
    return (layer.kind == "conv" and layer.groups == channels > 1 and w.shape[0] == channels
            and w.shape[1] == 1)


def _reshape_keeps(node: onnx.NodeProto, layer: Layer, walk: _Walk, dims: _Dims) -> str | None:
    """Where a Reshape or Flatten of known shapes leaves the units when it keeps their axis whole
    (:func:`.ops.reshaped_axis`): ``"last"``, ``"first"`` (axis 1, a conv's channels), or None
    (merged with other axes: a flatten, which the chain follows as such)."""
    known = dims.get()
    before, after = known.get(node.input[0]), known.get(node.output[0])
    if not before or not after:
        return None
    axis = 1 if layer.kind == "conv" and not walk.channels_last else len(before) - 1
    k = ops.reshaped_axis(before, after, axis)
    if k is None:
        return None
    if k == len(after) - 1:
        return "last"
    return "first" if k == 1 and axis == 1 else None


def _channels_after(node: onnx.NodeProto, dims: _Dims) -> str | None:
    """Where a Transpose of a channels-first map puts the channels (:func:`.ops.transposed_axis`):
    ``"last"`` (last, or followed only by axes of size 1, as ``(N, C, T, 1) -> (N, T, C, 1)``
    before a flatten), ``"first"`` (still on axis 1, spatial axes reordered), or None
    (elsewhere, or not known)."""
    k = ops.transposed_axis(node, 1)
    if k is None:
        return None
    perm = list(attr(node, "perm"))
    if k == 1:
        return "first"
    if k == len(perm) - 1:
        return "last"
    known = dims.get()
    shape = known.get(node.output[0])
    if not shape or None in shape[k + 1:]:  # read the trailing sizes off the input instead
        before = known.get(node.input[0])
        shape = [before[p] for p in perm] if before and len(before) == len(perm) else shape
    if shape and len(shape) == len(perm) and all(d == 1 for d in shape[k + 1:]):
        return "last"
    return None
