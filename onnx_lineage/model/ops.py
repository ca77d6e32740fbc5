"""How each ONNX op carries a unit axis from its input to its output: the one registry.

A hidden layer's units (a convolution's channels) stay permutable only while every op between the
layer that writes them and the layers that read them carries them along: applies the same
function to each unit (an activation, a clamp against a constant, a scaling by one value), moves
or resizes other axes (padding or resizing time, pooling space, a reduction over positions), or
moves the unit axis itself (a transpose). :func:`passage` says, for one node and the axis its
data input holds the units on, whether the units reach its output, on which axis, and whether
the op is positively homogeneous (``f(s x) = s f(x)`` for ``s > 0``, so units may also be
rescaled around it). An op it does not know stops the units, and the reason names it.

Ops are those of the default ONNX domain (opsets 7-22) and the ``com.microsoft`` ops that
exporters and onnxruntime's optimizer and quantizer write. Parametric layers (Gemm, Conv,
normalisations with their scale and bias) are not here: :mod:`.parameters` reads them and
:mod:`.topology` / :mod:`.streams` follow units through them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnx_lineage.model.graph import GraphIndex, attr, inferred_values

#: One-input elementwise ops (further inputs, if any, are attributes or constants that apply to
#: every unit alike): the units pass, in place.
UNARY = {
    # activations
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "Tanh", "Elu", "Selu", "Celu",
    "Gelu", "Softplus", "Softsign", "HardSwish", "Mish", "ThresholdedRelu", "Shrink", "Swish",
    "Clip", "Erf", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Sin", "Cos", "Tan", "Sinh",
    "Cosh", "Asin", "Acos", "Atan", "Asinh", "Acosh", "Atanh", "Sign", "Round", "Floor", "Ceil",
    # identities and casts
    "Dropout", "Identity", "Cast", "CastLike", "QuantizeLinear", "DequantizeLinear",
    "DynamicQuantizeLinear",
    # com.microsoft activations without a bias
    "QuickGelu", "FastGelu", "QLinearSigmoid", "QLinearLeakyRelu",
}
#: Ops that act on each unit's values over the other axes (or on all units alike): units pass.
EQUIVARIANT = {"Softmax", "LogSoftmax", "Hardmax", "LpNormalization",
               "MeanVarianceNormalization", "BatchNormalization", "InstanceNormalization"}
#: Spatial pooling of a channels-first map: channels pass on axis 1.
POOLING = {"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
           "GlobalLpPool", "QLinearAveragePool", "QLinearGlobalAveragePool"}
#: Two-operand elementwise ops with broadcasting: units pass when the other operand is a constant
#: that is the same for every unit (one value, or of size 1 on the unit axis).
BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "Sum", "Mean"}
#: Reductions: units pass when the unit axis is not reduced.
REDUCTIONS = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1",
              "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}
#: Positively homogeneous: units may be rescaled around these (also Pad with zeros, Slice,
#: nearest Resize, a mean or max over other axes and a product with a constant, which
#: :func:`passage` decides by their attributes). Casts between float types, and quantization
#: with the same scale for every unit, up to its rounding.
POSITIVE_HOMOGENEOUS = {"Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool",
                        "GlobalAveragePool", "GlobalMaxPool", "Dropout", "Identity", "Cast",
                        "QuantizeLinear", "DequantizeLinear"}
#: Ops whose output has the rank of their data input (where it is not reduced away).
RANK_KEEPING = UNARY | EQUIVARIANT | POOLING | BINARY | {"Pad", "Slice", "Resize", "Upsample",
                                                         "Concat"}
#: Ops that read only a tensor's shape, not its values: they do not branch a unit axis.
SHAPE_ONLY = {"Shape", "Size"}


@dataclass(frozen=True)
class Passage:
    """What a node does to the units of its data input.

    Attributes
    ----------
    keeps : bool
        The units reach the output, each with its own values.
    axis : int or None
        Their axis in the output (``-1``: the last; None: not known, kept as in the input).
    homogeneous : bool
        Positively homogeneous in its data input.
    reason : str
        Why the units stop, when they do.
    """

    keeps: bool
    axis: int | None = None
    homogeneous: bool = False
    reason: str = ""


def stop(reason: str) -> Passage:
    return Passage(False, reason=reason)


class Dims(dict):
    """Known dimensions of a graph's values (name to list, None where symbolic), with the
    model's default-domain ``opset``."""

    opset: int = 17


#: Inputs that give sizes: shape inference loses every shape after one it cannot read.
_SIZE_INPUTS = {"Pad": (1,), "Reshape": (1,), "Resize": (2, 3), "Upsample": (1,), "Expand": (1,),
                "Tile": (1,), "Slice": (1, 2, 3, 4), "ConstantOfShape": (0,)}


def dims_of(model: onnx.ModelProto, rounds: int = 4) -> Dims:
    """Known dimensions (None where symbolic) of the main graph's values and inputs; empty where
    shape inference fails. Sizes that exporters compute from constants or from known shapes
    (padding, reshape targets) are evaluated (:func:`from_shapes`) and shape inference run again
    with them, a few rounds, so that one computed padding does not hide every shape after it."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    g, folded, dims = GraphIndex(model.graph), {}, Dims()
    for _ in range(rounds):
        try:
            infos = inferred_values(model, folded)
        except Exception:  # no shapes: ops that need them are not followed
            infos = []
        dims = Dims({v.name: [d.dim_value if d.HasField("dim_value") else None
                              for d in v.type.tensor_type.shape.dim]
                     for v in list(infos) + list(model.graph.input)
                     if v.type.tensor_type.HasField("shape")})
        dims.opset = opset
        new = _foldable(g, dims, folded)
        if not new:
            break
        folded.update(new)
    return dims


def _foldable(g: GraphIndex, dims: Dims, done: dict) -> dict:
    """Size inputs not yet folded that :func:`from_shapes` evaluates to one value whatever the
    unknown sizes, where shape inference did not give the node's output a full shape."""
    found = {}
    for k, node in enumerate(g.graph.node):
        shape = dims.get(node.output[0]) if node.output else None
        if node.op_type not in _SIZE_INPUTS or (shape and None not in shape[1:]):
            continue
        data = dims.get(node.input[0]) if node.op_type != "ConstantOfShape" else [None]
        if node.op_type not in ("Pad", "Resize", "Upsample") and (not data or None in data[1:]):
            continue  # sizes that follow an unknown length (a sequence) stay unknown anyway
        for slot in _SIZE_INPUTS[node.op_type]:
            if (k, slot) in done or len(node.input) <= slot or not node.input[slot] \
                    or g.producer(node.input[slot]) is None:
                continue  # absent, or an initializer shape inference reads already
            c = g.constant(node.input[slot])
            values = [c.value] if c is not None else from_shapes(g, node.input[slot], dims)
            if values and all(np.array_equal(values[0], v) for v in values[1:]):
                found[(k, slot)] = values[0]
    return found


def passage(g: GraphIndex, node: onnx.NodeProto, name: str, axis: int | None,
            dims: dict, rank: int | None = None) -> Passage:
    """How ``node`` carries the units that its input ``name`` holds on ``axis`` (1: a
    channels-first map's channels; -1: the last axis; any axis when the rank is known; None:
    spread over a flattened axis, where only ops that treat every value alike pass). ``rank``:
    the rank of ``name`` where shape inference does not know it and the caller does (a
    convolution's output).

    Only ops whose effect on the units does not depend on their order are passed; the caller
    handles parametric layers, reshapes, transposes and branches; it must stop where the units
    come out on another axis than it follows (``Passage.axis``)."""
    op = node.op_type
    rank = len(dims[name]) if dims.get(name) else rank
    if axis is None:
        others = [n for n in node.input[1:] if n]
        scalar = all((c := g.constant(n)) is not None and np.asarray(c.value).size == 1
                     for n in others)
        if op in UNARY and (op not in ("Clip", "PRelu") or scalar):
            return Passage(True, None, op in POSITIVE_HOMOGENEOUS)
        if op in BINARY and len(node.input) == 2 and scalar and node.input[0] == name:
            return Passage(True, None, False)
        return stop(f"passes through {op} after its units were flattened")
    if op in UNARY:
        if op == "Clip" and not _uniform(g, node.input[1:], axis, rank):
            return stop("passes through a Clip with bounds per unit")
        if op == "PRelu" and not _uniform(g, node.input[1:], axis, rank):
            return stop("passes through a PRelu with a slope per unit")
        return Passage(True, axis, op in POSITIVE_HOMOGENEOUS)
    if op in EQUIVARIANT:
        return Passage(True, axis)
    if op in POOLING:
        return Passage(True, axis, op in POSITIVE_HOMOGENEOUS) if axis == 1 else stop(
            f"passes through {op} over its unit axis")
    if op in BINARY:
        others = [n for n in node.input if n and n != name]
        if len(others) == 1 and not g.is_constant(others[0]) and same_for_every_unit(
                g, others[0], axis, rank, dims):  # a mask over positions, a per-row norm
            return Passage(True, axis, False)
        if len(others) != 1 or not g.is_constant(others[0]):
            return stop(f"passes through {op} with another computed operand")
        if not _uniform(g, others, axis, rank):
            return stop(f"passes through {op} with a constant per unit")
        return Passage(True, axis, _homogeneous_binary(g, op, others[0], node.input[0] == name))
    if op in REDUCTIONS:
        return _reduction(g, node, axis, rank)
    if op == "Pad":
        return _pad(g, node, axis, rank, dims)
    if op == "Slice":
        return _slice(g, node, axis, rank)
    if op == "Gather" and name == node.input[0]:
        return _gather(g, node, axis, rank, dims)
    if op in ("Resize", "Upsample"):
        return _resize(g, node, axis, rank, dims.get(name))
    if op in ("Squeeze", "Unsqueeze"):
        return _squeeze(g, node, axis, rank)
    if op == "Concat" and sum(1 for n in node.input if n) == 1:  # of one tensor: a copy
        return Passage(True, axis, True)
    return stop(f"passes through {op}")


def concat_sizes(node: onnx.NodeProto, axis: int, dims: dict) -> list | None:
    """Sizes on the unit axis (``axis``, counted from the front or, negative, from the end) of a
    Concat's inputs, in order, None where one is not known; None instead when the Concat joins
    another axis, its inputs' rank cannot be told, or an input is given twice (a copy of the
    units, not a block of them)."""
    names = [n for n in node.input if n]
    ranks = {len(dims[n]) for n in names if dims.get(n)}
    if len(set(names)) != len(names) or len(ranks) != 1:
        return None
    (rank,) = ranks
    if not -rank <= axis < rank or int(attr(node, "axis", 0)) % rank != axis % rank:
        return None  # no such axis (a scalar, a vector read as channels-first), or another
    return [dims[n][axis] if dims.get(n) else None for n in names]


def block_of(sizes: list, k: int, total: int) -> tuple | None:
    """Channels ``(start, stop)`` that input ``k`` of a Concat with inputs of ``sizes`` (one of
    them may be None) fills in an output of ``total`` (read off the layer that reads it); None
    when the sizes cannot add up to it."""
    if sizes.count(None) > 1:
        return None
    missing = total - sum(z for z in sizes if z is not None)
    full = [missing if z is None else z for z in sizes]
    if min(full) < 1 or sum(full) != total:
        return None
    start = sum(full[:k])
    return start, start + full[k]


def _axes(g: GraphIndex, node: onnx.NodeProto, slot: int) -> list[int] | None:
    """The ``axes`` attribute, or the constant input at ``slot`` (later opsets)."""
    axes = attr(node, "axes")
    if axes is None and len(node.input) > slot and node.input[slot]:
        c = g.constant(node.input[slot])
        axes = None if c is None else [int(a) for a in np.asarray(c.value).reshape(-1)]
    return None if axes is None else list(axes)


def _on_axis(axes, axis: int, rank: int | None) -> bool | None:
    """Whether ``axis`` is among ``axes`` (None: cannot tell without the rank)."""
    if rank is None:
        if all(a >= 0 for a in axes) and axis >= 0 or all(a < 0 for a in axes) and axis < 0:
            return axis in axes
        return None
    return axis % rank in {a % rank for a in axes}


def _uniform(g: GraphIndex, names, axis: int, rank: int | None) -> bool:
    """Every named input is absent, or a constant with the same value for every unit: one
    value, or size 1 on the unit axis as it broadcasts."""
    for n in names:
        if not n:
            continue
        c = g.constant(n)
        if c is None:
            return False
        v = np.asarray(c.value)
        if v.size == 1:
            continue
        if axis < 0:
            k = v.ndim + axis
        elif rank is None:
            return False
        else:
            k = v.ndim - (rank - axis)
        if 0 <= k < v.ndim and v.shape[k] != 1:
            return False
    return True


#: Ops whose output is the same for every unit when each of their inputs is.
_ELEMENTWISE_OF = UNARY | BINARY | {"Not", "And", "Or", "Xor", "Equal", "Greater", "Less",
                                    "GreaterOrEqual", "LessOrEqual", "Where", "Expand"}


def same_for_every_unit(g: GraphIndex, name: str, axis: int, rank: int | None, dims: dict,
                        depth: int = 12) -> bool:
    """A computed tensor that, broadcast against the units' tensor (of rank ``rank``, units on
    ``axis``), has the same value for every unit: size 1 on that axis, or made from such tensors
    by elementwise ops and broadcasts (an attention mask unsqueezed, expanded and cast, as
    mean pooling over tokens writes it; a sum of that mask over positions). Followed back
    ``depth`` nodes at most; False where anything else is on the way."""
    shape = dims.get(name)
    if shape is not None and len(shape) >= 1:
        k = len(shape) + axis if axis < 0 else (None if rank is None
                                                else len(shape) - (rank - axis))
        if k is not None and (k < 0 or shape[k] == 1):
            return True
    if g.is_constant(name):
        return _uniform(g, [name], axis, rank)
    node = g.producer(name)
    if node is None or depth == 0:
        return False
    if node.op_type == "Expand":  # broadcasting copies the values, unit by unit alike
        return same_for_every_unit(g, node.input[0], axis, rank, dims, depth - 1)
    if node.op_type in _ELEMENTWISE_OF:
        return all(same_for_every_unit(g, n, axis, rank, dims, depth - 1)
                   for n in node.input if n)
    if node.op_type in REDUCTIONS and axis == -1:  # over other axes: the last stays last
        axes, r = _axes(g, node, 1), len(dims.get(node.input[0]) or ())
        return bool(axes) and r > 0 and all(a % r != r - 1 for a in axes) and \
            same_for_every_unit(g, node.input[0], axis, rank, dims, depth - 1)
    return False


def _homogeneous_binary(g: GraphIndex, op: str, other: str, first: bool) -> bool:
    """A clamp at zero, or a product or quotient by a constant (the same for every unit: a
    linear map), is positively homogeneous; adding a constant, a power, or a constant divided
    by the units (``first``: they are the first operand) is not."""
    v = np.asarray(g.constant(other).value)
    if op in ("Max", "Min"):
        return bool(np.all(v == 0))
    return op == "Mul" or op == "Div" and first


def _reduction(g: GraphIndex, node: onnx.NodeProto, axis: int, rank: int | None) -> Passage:
    """A reduction over other axes: the units keep their place counted from the end (``axis``
    negative) or from the front, less the axes dropped before them."""
    axes = _axes(g, node, 1)
    if not axes:
        return stop(f"{node.op_type} over every axis")
    on = _on_axis(axes, axis, rank)
    if on is None and axis == 1 and all(a >= 2 for a in axes):
        on = False  # spatial axes of a channels-first map
    if on is not False:
        return stop(f"{node.op_type} over the unit axis")
    homogeneous = node.op_type in ("ReduceMean", "ReduceMax")
    if int(attr(node, "keepdims", 1)) or axis < 0:
        return Passage(True, axis, homogeneous)
    before = [a for a in axes if (a % rank if rank else a) < axis]
    if before and (rank is None or any(a < 0 for a in axes)):
        return stop(f"{node.op_type} drops axes before the units")
    return Passage(True, axis - len(before), homogeneous)


def _pad(g: GraphIndex, node: onnx.NodeProto, axis: int, rank: int | None,
         dims: dict) -> Passage:
    pads = attr(node, "pads")
    trials = None if pads is None else [pads]
    if pads is None and len(node.input) > 1 and node.input[1]:
        c = g.constant(node.input[1])
        trials = [c.value] if c is not None else from_shapes(g, node.input[1], dims)
    if not trials:
        return stop("passes through a Pad of unknown size")
    axes = _axes(g, node, 3) if len(node.input) > 3 else None
    for pads in trials:  # sized from shapes: the unit axis is unpadded whatever the sizes
        pads = [int(p) for p in np.asarray(pads).reshape(-1)]
        n = len(pads) // 2
        r = rank if rank is not None else (n if len(node.input) <= 3 else None)
        for k, a in enumerate(list(range(n)) if axes is None else axes):
            if (pads[k] or pads[k + n]) and _on_axis([a], axis, r) is not False:
                return stop("passes through a Pad of its unit axis")
    value = 0.0
    if len(node.input) > 2 and node.input[2]:
        c = g.constant(node.input[2])
        value = None if c is None else float(np.asarray(c.value).reshape(-1)[0])
    mode = attr(node, "mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    return Passage(True, axis, mode != "constant" or value == 0.0)


#: Ops that a tensor computed from shapes alone may pass through (:func:`from_shapes`).
_SHAPE_ARITHMETIC = {"Add", "Sub", "Mul", "Div", "Cast", "Concat", "Constant", "ConstantOfShape",
                     "Gather", "Reshape", "Slice", "Squeeze", "Unsqueeze", "Transpose", "Floor",
                     "Ceil", "Max", "Min", "Neg", "Abs", "Mod", "Range", "Equal", "Where",
                     "Identity", "ReduceProd", "Expand", "Greater", "Less", "Not", "Sqrt",
                     "Reciprocal", "Pow"}


def from_shapes(g: GraphIndex, name: str, dims: dict, limit: int = 400) -> list | None:
    """Values of a tensor computed only from other tensors' shapes (padding sized from the
    input's length, as exporters write "same" padding), evaluated with onnx's reference
    implementation for each of :data:`_TRIALS` (sizes put in for the dimensions that shape
    inference left unknown: the batch on axis 0, the rest). None where the tensor reads anything
    but shapes and constants, or a trial fails."""
    nodes, seen, stack = set(), set(), [name]
    while stack:
        t = stack.pop()
        if t in seen or not t:
            continue
        seen.add(t)
        node = g.producer(t)
        if node is None:
            if not g.is_constant(t):
                return None
            continue
        if node.op_type != "Shape" and node.op_type not in _SHAPE_ARITHMETIC:
            return None
        nodes.add(id(node))
        if len(nodes) > limit:
            return None
        if node.op_type != "Shape":
            stack += list(node.input)
    ordered = [n for n in g.graph.node if id(n) in nodes]
    values = []
    for trial in _TRIALS:
        try:
            with np.errstate(all="ignore"):
                value = _interpreted(g, ordered, name, dims, trial)
        except Exception:  # a value numpy cannot compute (a bad reshape): not known
            value = None
        values.append(value if value is not _UNKNOWN_OP else
                      _evaluated(g, ordered, name, dims, trial))
        if values[-1] is None:
            return None
    return values


#: Sizes put in for unknown dimensions by :func:`from_shapes`: (batch on axis 0, any other).
_TRIALS = ((1, 64), (2, 97))


_UNKNOWN_OP = object()  # the small interpreter does not know an op: the reference one runs

_UNARY_NP = {"Cast": lambda x, n: x, "Identity": lambda x, n: x, "Floor": lambda x, n: np.floor(x),
             "Ceil": lambda x, n: np.ceil(x), "Neg": lambda x, n: -x, "Abs": lambda x, n: np.abs(x),
             "Sqrt": lambda x, n: np.sqrt(x), "Reciprocal": lambda x, n: 1 / x,
             "Not": lambda x, n: np.logical_not(x)}
_BINARY_NP = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum,
              "Min": np.minimum, "Equal": np.equal, "Greater": np.greater, "Less": np.less,
              "Pow": np.power}


def _interpreted(g: GraphIndex, nodes: list, name: str, dims: dict, trial: tuple):
    """:func:`_evaluated` for the few ops shape arithmetic is made of (Shape, Gather, Concat,
    Unsqueeze, Slice, arithmetic ...), in numpy, without building a graph for onnx's reference
    implementation (which costs milliseconds a call); :data:`_UNKNOWN_OP` where another op is
    on the way, None where a value cannot be known."""
    values: dict = {}

    def get(t: str):
        if t in values:
            return values[t]
        c = g.constant(t)
        return None if c is None else np.asarray(c.value)

    for node in nodes:
        op, ins = node.op_type, [get(i) if i else None for i in node.input]
        if op == "Shape":
            shape = dims.get(node.input[0])
            if not shape:
                return None
            full = [(trial[0] if k == 0 else trial[1]) if d is None else d
                    for k, d in enumerate(shape)]
            out = np.array(full[attr(node, "start", 0):attr(node, "end", None)], np.int64)
        elif op == "Constant":
            c = g.constant(node.output[0])
            if c is None:
                return None
            out = c.value
        elif any(x is None for x, i in zip(ins, node.input) if i):
            return None
        else:
            out = _computed(node, ins)
            if out is _UNKNOWN_OP:
                return _UNKNOWN_OP
        values[node.output[0]] = np.asarray(out)
    return values.get(name)


def _computed(node: onnx.NodeProto, ins: list):
    """The output of one shape-arithmetic ``node`` from its inputs' values, in numpy;
    :data:`_UNKNOWN_OP` for an op this interpreter does not know."""
    op = node.op_type
    if op in _UNARY_NP:
        out = _UNARY_NP[op](ins[0], node)
    elif op in _BINARY_NP:
        out = _BINARY_NP[op](ins[0], ins[1])
    elif op == "Mod" and not int(attr(node, "fmod", 0)):
        out = np.mod(ins[0], ins[1])
    elif op == "Div":
        out = (ins[0] // ins[1] if ins[0].dtype.kind in "iu" and ins[1].dtype.kind in "iu"
               else ins[0] / ins[1])
    elif op == "Gather":
        out = np.take(ins[0], ins[1], axis=int(attr(node, "axis", 0)))
    elif op == "Concat":
        out = np.concatenate([np.atleast_1d(x) for x in ins], axis=int(attr(node, "axis", 0)))
    elif op in ("Unsqueeze", "Squeeze"):
        axes = attr(node, "axes") or ([] if len(ins) < 2 or ins[1] is None
                                      else [int(a) for a in ins[1].reshape(-1)])
        out = (np.expand_dims(ins[0], tuple(axes)) if op == "Unsqueeze" else
               np.squeeze(ins[0], tuple(axes) if axes else None))
    elif op == "Slice" and len(ins) >= 3:
        axes = range(len(ins[1])) if len(ins) < 4 or ins[3] is None else ins[3]
        steps = [1] * len(ins[1]) if len(ins) < 5 or ins[4] is None else ins[4]
        index = [slice(None)] * ins[0].ndim
        for a, b, e, st in zip(axes, ins[1], ins[2], steps):
            index[int(a)] = slice(int(b), int(e), int(st))
        out = ins[0][tuple(index)]
    elif op == "Reshape":
        out = ins[0].reshape([int(d) if d != 0 else ins[0].shape[k]
                              for k, d in enumerate(ins[1].reshape(-1))])
    elif op == "ConstantOfShape":
        fill = attr(node, "value")
        fill = np.zeros(1, np.float32) if fill is None else onnx.numpy_helper.to_array(fill)
        out = np.full([int(d) for d in ins[0].reshape(-1)], fill.reshape(-1)[0], fill.dtype)
    elif op == "Where":
        out = np.where(ins[0], ins[1], ins[2])
    elif op == "Expand":
        out = ins[0] * np.ones([int(d) for d in ins[1].reshape(-1)], ins[0].dtype)
    elif op == "Transpose":
        out = np.transpose(ins[0], attr(node, "perm"))
    elif op == "Range":
        out = np.arange(ins[0], ins[1], ins[2])
    else:
        return _UNKNOWN_OP
    return out


def _evaluated(g: GraphIndex, nodes: list, name: str, dims: dict, trial: tuple):
    from onnx.reference import ReferenceEvaluator
    body, inits = [], {}
    for node in nodes:
        if node.op_type == "Shape":
            shape = dims.get(node.input[0])
            if not shape:
                return None
            full = [(trial[0] if k == 0 else trial[1]) if d is None else d
                    for k, d in enumerate(shape)]
            start, end = attr(node, "start", 0), attr(node, "end", None)
            value = np.array(full[start:end], np.int64)
            body.append(onnx.helper.make_node("Constant", [], [node.output[0]],
                                              value=onnx.numpy_helper.from_array(value)))
            continue
        body.append(node)
        for i in node.input:
            if i and g.producer(i) is None and i not in inits:
                c = g.constant(i)
                if c is None or np.asarray(c.value).size > 4096:
                    return None
                inits[i] = onnx.numpy_helper.from_array(np.asarray(c.value), i)
    graph = onnx.helper.make_graph(body, "shapes", [], [onnx.helper.make_tensor_value_info(
        name, onnx.TensorProto.UNDEFINED, None)], list(inits.values()))
    try:
        run = ReferenceEvaluator(graph, opsets={"": getattr(dims, "opset", 17)})
        return np.asarray(run.run(None, {})[0])
    except Exception:  # anything the reference cannot run: not known
        return None


def _slice(g: GraphIndex, node: onnx.NodeProto, axis: int, rank: int | None) -> Passage:
    if len(node.input) < 3:  # opset < 10: in attributes
        axes = attr(node, "axes") or list(range(len(attr(node, "starts") or [])))
    elif len(node.input) > 3 and node.input[3]:
        axes = _axes(g, node, 3)
    else:
        c = g.constant(node.input[1])
        axes = None if c is None else list(range(np.asarray(c.value).size))
    if axes is None or _on_axis(axes, axis, rank) is not False:
        return stop("passes through a Slice of its unit axis")
    return Passage(True, axis, True)


def _gather(g: GraphIndex, node: onnx.NodeProto, axis: int, rank: int | None,
            dims: dict) -> Passage:
    """A selection along another axis (a position's vector, a time step): the units keep their
    place counted from the end; counted from the front, they move down by one when a scalar
    index drops an axis before them."""
    k = int(attr(node, "axis", 0))
    on = _on_axis([k], axis, rank)
    if on is not False:
        return stop("passes through a Gather of its unit axis" if on else
                    "passes through a Gather of unknown rank")
    if axis < 0 or (k % rank if rank else k) > axis:
        return Passage(True, axis)
    c = g.constant(node.input[1])
    index_rank = np.asarray(c.value).ndim if c is not None else (
        len(dims[node.input[1]]) if dims.get(node.input[1]) is not None else None)
    if index_rank is None:
        return stop("passes through a Gather of unknown indices before the units")
    return Passage(True, axis - 1 + index_rank)


def _resize(g: GraphIndex, node: onnx.NodeProto, axis: int, rank: int | None,
            shape: list | None) -> Passage:
    """Resize/Upsample with scale 1 (or the same size) on the unit axis."""
    scales = sizes = None
    if node.op_type == "Upsample" and len(node.input) == 1:
        scales = attr(node, "scales")
    for slot in ((1,) if node.op_type == "Upsample" else (2, 3)):
        if len(node.input) > slot and node.input[slot]:
            c = g.constant(node.input[slot])
            if c is None:
                return stop(f"passes through a {node.op_type} of unknown scale")
            v = np.asarray(c.value).reshape(-1)
            if v.size:
                sizes, scales = (v, scales) if slot == 3 else (sizes, v)
    k = None
    if scales is not None and len(scales):
        k = axis % len(scales)
        same = float(scales[k]) == 1.0
    elif sizes is not None and len(sizes) and shape:
        k = axis % len(sizes)
        same = shape[k] is not None and int(sizes[k]) == shape[k]
    else:
        return stop(f"passes through a {node.op_type} of unknown scale")
    if not same or (rank is not None and len(scales if scales is not None else sizes) != rank):
        return stop(f"passes through a {node.op_type} of its unit axis")
    mode = attr(node, "mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    return Passage(True, axis, mode == "nearest")


def transposed_axis(node: onnx.NodeProto, axis: int) -> int | None:
    """Where a Transpose puts the axis its input holds the units on (``axis``, from the front
    or, negative, from the end), counted from the front; None without a ``perm``."""
    perm = list(attr(node, "perm") or [])
    if sorted(perm) != list(range(len(perm))) or not perm:  # absent, or not a permutation
        return None
    return perm.index(axis % len(perm))


def reshaped_axis(before: list | None, after: list | None, axis: int) -> int | None:
    """Where a Reshape or Flatten puts the units its input holds whole on ``axis`` (counted from
    the front), read off the known shapes ``before`` and ``after`` it: their axis in the output
    when they stay one axis, with the same number of values before and after them
    (``(N, 1, T, C) -> (N, T, C)``, ``(N, C, H, W) -> (N, C, H * W)``); None when they are merged
    with other axes (a flatten) or the shapes are not known enough to tell."""
    if not before or not after or not 0 <= axis < len(before):
        return None
    units = before[axis]
    if units is None or (before[0] is None) != (after[0] is None):
        return None
    lead = before[1:axis] if before[0] is None else before[:axis]
    trail = before[axis + 1:]
    for k, d in enumerate(after):
        if d != units or (after[0] is None and k == 0):
            continue
        lead_k = after[1:k] if after[0] is None else after[:k]
        if None in lead + lead_k + trail + after[k + 1:]:
            return None
        if int(np.prod(lead)) == int(np.prod(lead_k)) and \
                int(np.prod(trail)) == int(np.prod(after[k + 1:])):
            return k
    return None


def _squeeze(g: GraphIndex, node: onnx.NodeProto, axis: int, rank: int | None) -> Passage:
    """Squeeze/Unsqueeze of other axes: last-axis units stay last unless the last axis is the one
    added or removed; units counted from the front keep their place when every axis added or
    removed comes after them."""
    axes = _axes(g, node, 1)
    if axes is None:
        return stop(f"passes through a {node.op_type} of unknown axes")
    if axis < 0:
        if axis != -1 or -1 in axes:
            return stop(f"{node.op_type} of the last axis")
        if rank is None and any(a >= 0 for a in axes):
            return stop(f"passes through a {node.op_type} of unknown rank")
        ref = rank if node.op_type == "Squeeze" else (rank or 0) + len(axes)
        if any(a % ref == ref - 1 for a in axes):
            return stop(f"{node.op_type} of the last axis")
        return Passage(True, -1, True)
    if node.op_type == "Squeeze" and axis in axes:
        return stop("squeezes its unit axis")
    if all(a > axis for a in axes):
        return Passage(True, axis, True)
    return stop(f"{node.op_type} before the unit axis")
