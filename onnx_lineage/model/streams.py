"""Residual streams and gated units: one unit axis shared by many layers.

In a residual network (a transformer, a pre-LN MLP stack, a ResNet) ``x_{i+1} = x_i + f_i(x_i)``
keeps one unit axis from the first layer that writes it to the last that reads it. Permuting that
axis is function-preserving only when done everywhere at once: the rows of every layer that writes
into the stream (the embedding, the last layer of each block, a projection shortcut), the inputs
of every layer that reads it (the first layers of each block, a squeeze-excite block, the head)
and the per-unit parameters on it (LayerNorm, BatchNorm, depthwise convolutions). The same holds
for units multiplied by a gate computed from them: a squeeze-excite ``x * sigmoid(W2 relu(W1
pool(x)))``, a SiLU ``x * sigmoid(x)`` written as two ops, a SwiGLU ``silu(W1 x) * W3 x``.
:func:`streams` finds those axes in a graph and lists their members, or says why one cannot be
permuted (a reader that is not a parametric layer, a constant added per unit, a graph output).

The unit axis is the last one, or axis 1 for a convolution's output and what keeps its layout.
The walk unites tensors that share units: the operands and result of an ``Add`` of two computed
tensors or of a ``Mul`` of two computed tensors with the same units, the input and output of a
unit-preserving op, a normalisation, a depthwise convolution, an elementwise op with a scalar
constant, a reduction over other axes (mean over positions, global pooling), a flatten of a
pooled map, a selection along other axes (the first position's vector), a product with a tensor
that is constant along the units (an attention mask), and the right operand and result of a
product of two computed tensors (attention weights times values: rows are mixed, units kept). A
group that holds a residual ``Add`` is a stream; one that holds a gating ``Mul`` is a gated
group of hidden units.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnx_lineage.model import ops
from onnx_lineage.model.graph import GraphIndex, attr
from onnx_lineage.model.ops import SHAPE_ONLY
from onnx_lineage.model.parameters import PER_UNIT, Layer, is_square, last_axis_mean
from onnx_lineage.model.topology import is_depthwise, scope_graphs

#: Ops that move axes: the walk follows the units to axis 1 or to the last axis.
_LAYOUT_MOVES = {"Squeeze", "Unsqueeze", "Transpose", "Reshape", "Flatten"}
#: Ops whose further inputs are indices or sizes (computed or not), not values: their data is
#: their first input.
_INDEXED = {"Gather", "Slice", "Pad", "Resize", "Upsample", "Reshape", "Expand", "Tile",
            "Squeeze", "Unsqueeze"}


@dataclass(frozen=True)
class Stream:
    """One residual stream of a model.

    Attributes
    ----------
    width : int
        Units of the stream.
    writers : tuple of int
        Layers (dense, embedding) whose output units (rows of the canonical weight) are the
        stream's units.
    readers : tuple of int
        Dense layers that read the stream (input columns are the stream's units).
    followers : tuple of int
        LayerNorm layers on the stream (per-unit parameters).
    reason : str
        Why the stream cannot be permuted as a whole; empty when it can.
    residual : bool
        A residual stream (False: hidden units shared through a gate, no residual addition).
    shared : bool
        Hidden units of one layer read by several layers (heads on one trunk), without a gate.
    pinned : str
        Why the stream's order is part of the function although every member is a parametric
        layer (``"it is an output of the model"``: an embedding model's output); empty when
        permuting it changes nothing outside. Such a stream is compared unit by unit in place:
        its order is evidence only under the assumption that training did not tell its units
        apart (a contrastive or masked-token loss does not, a regression onto fixed target
        dimensions does).
    spans : tuple of (int, (int, int))
        Readers that read the stream as one block of a ``Concat`` on its axis, with the input
        channels ``(start, stop)`` it fills; other readers read it whole.
    tiles : tuple of (int, int)
        Writers whose output is split on the axis into equal blocks that each carry the units
        (a GLU's halves, gates written as ops), with their number of blocks; the others write
        the units once.
    """

    width: int
    writers: tuple = ()
    readers: tuple = ()
    followers: tuple = ()
    reason: str = ""
    residual: bool = True
    shared: bool = False
    pinned: str = ""
    spans: tuple = ()
    tiles: tuple = ()

    @property
    def members(self) -> tuple:
        """Every layer whose parameters carry the stream's units."""
        return self.writers + self.readers + self.followers

    def span(self, reader: int) -> tuple:
        """The input channels of ``reader`` that hold the stream (``()``: all of them)."""
        return next((s for i, s in self.spans if i == reader), ())

    def tiling(self, writer: int) -> int:
        """Blocks of ``writer``'s output that each carry the units (1: written once)."""
        return next((k for i, k in self.tiles if i == writer), 1)


class _Groups:
    """Union-find over tensor names."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, x: str, y: str) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[ry] = rx


def streams(model: onnx.ModelProto, layers: list[Layer], dims: dict | None = None,
            graphs: dict | None = None) -> list[Stream]:
    """The residual streams and gated groups of the main graph and of its subgraphs (If
    branches: a stream stays within its graph), in the order of their first member (``dims``:
    the main graph's :func:`.ops.dims_of`, ``graphs`` its :func:`.topology.scope_graphs`,
    where the caller has them; subgraphs are walked without inferred shapes)."""
    found = []
    for scope, g in (scope_graphs(model) if graphs is None else graphs).items():
        mine = [x for x in layers if x.scope == scope]
        if not any(x.kind in ("dense", "conv", "embedding") for x in mine):
            continue
        if scope:
            known = ops.Dims()
        else:
            known = dims = ops.dims_of(model) if dims is None else dims
        found += _streams_of(g, mine, known)
    found = [s for s in found if s.members]  # an Add of masks, no layer's units: no stream
    order = {x.index: k for k, x in enumerate(layers)}
    return sorted(found, key=lambda s: min((order[i] for i in s.members), default=0))


def _streams_of(g: GraphIndex, layers: list[Layer], dims: dict) -> list[Stream]:
    """The streams of one graph, its ``layers`` (those of its scope)."""
    by_output = {x.output: x for x in layers}
    groups, residual, gated, joined, internal, blocks, split = _walk(g, layers, by_output, dims)
    kinds = {groups.find(r): True for r in residual}
    for r in gated:
        kinds.setdefault(groups.find(r), False)
    found = [_stream(g, groups, root, layers, by_output, joined, is_residual, internal, blocks,
                     split)
             for root, is_residual in kinds.items()]
    return found + _fanned_out(g, groups, kinds, layers, by_output, joined, internal)


def _walk(g: GraphIndex, layers: list[Layer], by_output: dict, dims: dict) -> tuple:
    """Unite the tensors of one graph that share units (see the module docstring): the groups,
    the residual Adds and gating Muls found, the outputs joined to an input, the nodes inside
    layers written as ops, the inputs of Concats on the unit axis with the block of the output
    each fills (:func:`_concat_blocks`), and the outputs of Splits into equal blocks on the unit
    axis with the tensor split (:func:`_split_blocks`: the blocks are united, one unit axis)."""
    groups, residual, gated, blocks, split = _Groups(), [], [], {}, {}
    joined = set()  # first outputs of the nodes whose output shares units with an input
    for x in layers:  # normalisations written as ops: their nodes read the units, output keeps them
        if x.internal:
            groups.union(x.output, x.input)
            joined.add(x.output)
    internal = {n for x in layers for n in x.internal} | mean_squares(g)
    first = set()  # channels-first tensors: units on axis 1
    for node in g.graph.node:
        data = [n for n in node.input if n and not g.is_constant(n)]
        if not data or not node.output or node.name in internal:
            continue
        out = node.output[0]
        layer = by_output.get(out)
        axis = 1 if data[0] in first else -1
        carried = _carried(g, node, data, axis, dims, layer)
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv") or carried == 1:
            first.add(out)
        if carried is not None:
            groups.union(out, data[0])
        elif (scaled := _scaled(g, node, data, axis, dims) if layer is None else None):
            groups.union(out, scaled)  # a mask over positions, a per-row norm: every unit alike
        elif node.op_type in ("Add", "Sum") and len(data) >= 2 and layer is None:
            for n in data:
                groups.union(out, n)
            residual.append(out)
        elif node.op_type == "Mul" and len(data) == 2 and _same_units(data, dims, axis, first):
            groups.union(out, data[0])
            groups.union(out, data[1])
            gated.append(out)
        elif node.op_type == "MatMul" and len(data) == 2:  # rows mixed (attention): units kept
            groups.union(out, node.input[1])
        elif node.op_type == "Split" and (parts := _split_blocks(g, node, axis, dims)):
            for n in parts:
                groups.union(parts[0], n)
                split[n] = (data[0], len(parts))
            if data[0] in first:
                first.update(parts)
            joined.update(parts)
            continue
        else:
            if node.op_type == "Concat":
                blocks.update(_concat_blocks(node, axis, dims))
            continue
        if len(data) > 1 and data[0] in first and node.op_type in ops.BINARY:
            first.add(out)  # an elementwise join of channels-first maps is one
        joined.add(out)
    return groups, residual, gated, joined, internal, blocks, split


def mean_squares(g: GraphIndex) -> set[str]:
    """Nodes that square a tensor only for the mean of its squares over the last axis (an RMS
    norm without a gain written as ops: ``Pow(x, 2)`` or ``Mul(x, x)`` read by nothing but a
    ``ReduceMean`` over the last axis alone): what they give is the same under any permutation
    (or rotation) of the units, so they read none of them; the norm's ``Div`` passes the units
    as a product with a tensor the same for every unit."""
    return {node.name for node in g.graph.node if is_square(g, node) and node.output
            and (cs := g.consumers_of(node.output[0]))
            and all(last_axis_mean(g, c) for c in cs)}


def _split_blocks(g: GraphIndex, node: onnx.NodeProto, axis: int, dims: dict) -> list:
    """The outputs of a Split of its input's unit axis (``axis``: 1 or -1) into two or more
    equal blocks, each a copy of the units' axis in its own block of the input's; empty for
    any other Split (another axis, unequal or unknown sizes)."""
    shape = dims.get(node.input[0])
    outs = [o for o in node.output if o]
    if not shape or not -len(shape) <= axis < len(shape) or len(outs) < 2 \
            or len(outs) != len(node.output):
        return []
    if int(attr(node, "axis", 0)) % len(shape) != axis % len(shape) or shape[axis] is None:
        return []
    sizes = attr(node, "split")
    if sizes is None and len(node.input) > 1 and node.input[1]:
        c = g.constant(node.input[1])
        sizes = None if c is None else [int(v) for v in c.value.reshape(-1)]
    size = shape[axis] // len(outs)
    if size * len(outs) != shape[axis] or (sizes is not None and set(sizes) != {size}):
        return []
    return outs


def _concat_blocks(node: onnx.NodeProto, axis: int, dims: dict) -> dict:
    """For a Concat on the unit axis (``axis``: 1 or -1), each input's ``(output, position,
    sizes)`` (:func:`.ops.concat_sizes`); empty for a Concat of another axis."""
    sizes = ops.concat_sizes(node, axis, dims)
    names = [n for n in node.input if n]
    return {} if sizes is None else {n: (node.output[0], k, sizes) for k, n in enumerate(names)}


def _moved_axis(g: GraphIndex, node: onnx.NodeProto, axis: int, dims: dict) -> int | None:
    """Where a Squeeze, Unsqueeze, Transpose, Reshape or Flatten puts the units its input holds
    on ``axis`` (1 or -1): 1 (channels-first) or -1 (last); None elsewhere or when it cannot be
    told (a reshape that merges them with other axes)."""
    if node.op_type == "Transpose":
        new = ops.transposed_axis(node, axis)
        return None if new is None else 1 if new == 1 else (
            -1 if new == len(attr(node, "perm")) - 1 else None)
    if node.op_type in ("Reshape", "Flatten"):
        before, after = dims.get(node.input[0]), dims.get(node.output[0])
        k = ops.reshaped_axis(before, after, axis % len(before)) if before and after else None
        return None if k is None else -1 if k == len(after) - 1 else 1 if k == 1 else None
    how = ops.passage(g, node, node.input[0], axis, dims)
    return how.axis if how.keeps and how.axis in (1, -1) else None


def _carried(g: GraphIndex, node: onnx.NodeProto, data: list, axis: int, dims: dict,
             layer: Layer | None) -> int | None:
    """Where ``node`` carries the units of its first data input (1: channels-first, -1: last),
    by the op registry (:func:`.ops.passage`) and the walk's own layout moves; None where it
    does not. A normalisation on the units, a depthwise convolution and a PReLU (layers with
    one parameter per unit) carry them too."""
    if layer is not None and (layer.kind == "prelu" or layer.kind == "conv"
                              and is_depthwise(layer, layer.units)):
        return axis
    if _is_layernorm(node):
        return -1
    if len(data) > 1 and (node.op_type not in _INDEXED or node.input[0] != data[0]):
        return None
    if node.op_type in _LAYOUT_MOVES:
        return _moved_axis(g, node, axis, dims)
    how = ops.passage(g, node, data[0], axis, dims)
    return axis if how.keeps and how.axis in (axis, None) else None


def _fanned_out(g: GraphIndex, groups: _Groups, kinds: dict, main: list[Layer], by_output,
                joined: set, internal: set) -> list[Stream]:
    """Hidden units of one layer that several layers read (the heads of a detector on its last
    trunk layer): one unit axis, permutable when every reader is a parametric layer and they
    are all matched. Groups that are no stream of that kind are left out (the chain that ends
    there says why)."""
    readers: dict[str, list] = {}
    for x in main:
        if x.kind in ("dense", "conv") and not is_depthwise(x, x.units):
            groups.parent.setdefault(x.input, x.input)
            readers.setdefault(groups.find(x.input), []).append(x)
    found = []
    for root, rs in readers.items():
        if len(rs) < 2 or root in kinds:
            continue
        s = _stream(g, groups, root, main, by_output, joined, False, internal)
        if s.writers and not s.reason and len(s.writers) == 1:
            found.append(Stream(s.width, s.writers, s.readers, s.followers, residual=False,
                                shared=True))
    return found


def _stream(g: GraphIndex, groups: _Groups, root: str, layers: list[Layer], by_output,
            joined: set, residual: bool, internal: set = frozenset(),
            blocks: dict | None = None, split: dict | None = None) -> Stream:
    tensors = {t for t in set(groups.parent) | set(groups.parent.values()) if groups.find(t) == root}
    per_unit = {x.index for x in layers if x.input in tensors and x.output in tensors
                and (x.kind in PER_UNIT
                     or (x.kind == "conv" and is_depthwise(x, x.units)))}
    writers = [x for x in layers if x.output in tensors and x.index not in per_unit
               and x.kind in ("dense", "embedding", "conv")]
    tiles, reason = _tiled_writers(g, tensors, by_output, split or {})
    writers += [x for x in layers if x.index in dict(tiles)]
    followers = [x for x in layers if x.index in per_unit]
    readers = [x for x in layers if x.kind in ("dense", "conv") and x.input in tensors
               and x.index not in per_unit]
    spans, reads = _block_readers(g, tensors, layers, blocks or {})
    readers += [x for x in layers if x.index in dict(spans)]
    widths = ({x.units // dict(tiles).get(x.index, 1) for x in writers}
              | {x.weight.shape[0] for x in followers}
              | {x.weight.shape[1] for x in readers if x.index not in dict(spans)}
              | {b - a for _, (a, b) in spans})
    reads |= {(x.input, x.op) for x in readers + followers}
    # a residual stream that is the model's output is compared in place (see ``Stream.pinned``)
    is_output = any(t in g.graph_outputs for t in tensors)
    pinned = "it is an output of the model" if residual and is_output else ""
    reason = reason or ("it is an output of the model" if is_output and not residual else "")
    own = {x.node for x in layers}
    reason = reason or next((r for t in sorted(tensors)
                             if (r := _blocker(g, t, by_output, joined, internal, reads, own))), "")
    grouped = [x for x in readers + writers if x.groups != 1]
    if not reason and grouped:
        reason = f"a grouped convolution (layer {grouped[0].index}) reads or writes it"
    if not reason and len(widths) != 1:
        reason = "its layers disagree on its width"
    return Stream(min(widths, default=0), tuple(x.index for x in writers),
                  tuple(x.index for x in readers), tuple(x.index for x in followers), reason,
                  residual, pinned="" if reason else pinned, spans=spans, tiles=tiles)


def _tiled_writers(g: GraphIndex, tensors: set, by_output: dict, split: dict
                   ) -> tuple[tuple, str]:
    """Layers whose output a Split cut into blocks of the stream: ``((index, blocks), ...)``,
    and why the stream cannot be permuted, if so (the tensor split is not a layer's output, or
    something besides the Split reads it and would see the blocks' units in their order)."""
    tiles = []
    for source, k in sorted({split[t] for t in tensors if t in split}):
        layer = by_output.get(source)
        readers = [c for c in g.consumers_of(source) if c.op_type not in SHAPE_ONLY]
        if layer is None or layer.kind not in ("dense", "conv") or layer.groups != 1:
            return (), "written by a Split of a tensor that is not a layer's output"
        if len(readers) != 1 or source in g.graph_outputs:
            return (), f"written by a Split of layer {layer.index}'s output, which others read too"
        tiles.append((layer.index, k))
    return tuple(tiles), ""


def _block_readers(g: GraphIndex, tensors: set, layers: list[Layer], blocks: dict
                   ) -> tuple[tuple, set]:
    """Layers that read tensors of a stream as one block of a Concat: ``((index, span), ...)``,
    and the ``(tensor, "Concat")`` reads they account for. A Concat counts only where every
    reader of its output is a dense or ungrouped conv layer (anything else would see the
    stream's units in their order)."""
    spans, reads = [], set()
    for t in sorted(tensors & set(blocks)):
        out, k, sizes = blocks[t]
        readers = [(x, ops.block_of(sizes, k, x.weight.shape[1])) for x in layers
                   if x.input == out and x.kind in ("dense", "conv") and x.groups == 1]
        others = [c for c in g.consumers_of(out) if c.op_type not in SHAPE_ONLY]
        if (readers and all(span for _, span in readers) and len(others) == len(readers)
                and out not in g.graph_outputs):
            spans += [(x.index, span) for x, span in readers]
            reads.add((t, "Concat"))
    return tuple(spans), reads


def _blocker(g: GraphIndex, t: str, by_output: dict, joined: set, internal: set, reads: set,
             own: set) -> str:
    """Why tensor ``t`` of a stream keeps the stream from being permuted; empty when it does
    not. A tensor written inside a parametric layer (``own``: their nodes), before its
    dequantization, is the layer's."""
    producer = g.producer(t)
    if producer is None and t not in by_output:
        return "it holds an input of the model"
    if t not in by_output and producer.output[0] not in joined and producer.name not in own:
        return f"written by a {producer.op_type} that is not a parametric layer"
    odd = [c.op_type for c in g.consumers_of(t)
           if c.name not in internal and (c.output[0] if c.output else "") not in joined
           and (t, c.op_type) not in reads and c.op_type not in SHAPE_ONLY]
    return f"read by {odd[0]}" if odd else ""


def _scaled(g: GraphIndex, node: onnx.NodeProto, data: list, axis: int, dims: dict
            ) -> str | None:
    """The operand of a two-operand elementwise op whose units pass because the other operand
    is computed but the same for every unit (:func:`.ops.same_for_every_unit`); None when
    neither or both are."""
    if len(data) != 2 or node.op_type not in ops.BINARY:
        return None
    kept = [n for n, other in (data, data[::-1]) if ops.same_for_every_unit(
        g, other, axis, len(dims[n]) if dims.get(n) else None, dims)]
    return kept[0] if len(kept) == 1 else None


def _is_layernorm(node: onnx.NodeProto) -> bool:
    return (node.op_type in ("LayerNormalization", "SimplifiedLayerNormalization",
                             "RMSNormalization") and int(attr(node, "axis", -1)) == -1)


def _same_units(data: list, dims: dict, axis: int, first: set) -> bool:
    """Two operands of a product with the same known number (> 1) of units on ``axis``, and the
    same rank: a gate on the units (squeeze-excite, SiLU, SwiGLU), not a per-row scaling. Two
    channels-first maps of unknown shapes count too: the stream's width check
    (:func:`_stream`) then refuses a gate of another width (a one-channel spatial mask)."""
    x, y = dims.get(data[0]), dims.get(data[1])
    if (not x or not y) and axis == 1 and data[1] in first:
        return True
    if not x or not y or len(x) != len(y):
        return False
    return x[axis] is not None and x[axis] == y[axis] and x[axis] > 1
