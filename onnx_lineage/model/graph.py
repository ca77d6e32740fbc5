"""Read-only index over an ONNX graph: producers, consumers, and constant folding of weight chains.

Weights reach their operator in many ways: a plain initializer, a ``Constant`` node, a
``DequantizeLinear`` of an int8 initializer (QDQ), ``Cast`` + ``Mul`` of ``X_q`` and ``X_scale``, a
``Cast`` from float16, a ``Transpose``. :meth:`GraphIndex.constant` evaluates such chains with numpy
and says which quantization (if any) it went through, so the rest of the package sees one float32
array per weight.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import onnx

from onnx_lineage.errors import ModelError
from onnx_lineage.model.blockquant import blocked, float_steps
from onnx_lineage.model.weights import tensor_array

#: Ops that a constant chain may go through, and how they are evaluated.
_FOLDABLE = {"Identity", "Cast", "DequantizeLinear", "Transpose", "Mul", "Sub", "Reshape",
             "Squeeze", "Unsqueeze", "Constant", "Concat", "Slice", "Gather"}

#: Cap on the elements of one tensor that is read; override with the environment variable
#: ``ONNX_LINEAGE_MAX_TENSOR_ELEMENTS``.
MAX_TENSOR_ELEMENTS = int(os.environ.get("ONNX_LINEAGE_MAX_TENSOR_ELEMENTS", 2**31))


@dataclass(frozen=True)
class Const:
    """A constant value reaching an op input.

    Attributes
    ----------
    value : ndarray
        The evaluated value (float32 after dequantization or cast, else the stored dtype;
        float16 weights, and their cast to float32, stay float16: half the memory, converted
        where they are used).
    quant : str or None
        ``"qdq"``, ``"cast_mul"``, ``"fp16"``, ``"bf16"`` when the chain dequantized or cast it;
        a float8 value read as float32 is named by its type (``"fp8e4m3fn"``, ``"fp8e4m3fnuz"``,
        ``"fp8e5m2"``, ``"fp8e5m2fnuz"``), a DequantizeLinear of int4/uint4 or float8 values
        ``"qdq int4"`` (``"qdq fp8e4m3fn"``, ...), one with ``block_size`` ``"qdq int4 blocked"``
        (``"qdq uint8 blocked"``, ...).
    step : float
        Largest quantization step of the chain (0 for float weights).
    steps : ndarray or None
        Each value's own step, in the value's shape, where it has one of its own: values read
        from float8 (their format's spacing) or dequantized by blocks (their block's scale),
        carried through the ops that move values without changing them.
    """

    value: np.ndarray
    quant: str | None = None
    step: float = 0.0
    steps: np.ndarray | None = field(default=None, repr=False, compare=False)


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def attr(node: onnx.NodeProto, name: str, default=None):
    """Value of a node attribute, or ``default``."""
    return _attr(node, name, default)


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1
               ) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32, per tensor or per channel along ``axis``.

    Parameters
    ----------
    q : ndarray of int8/uint8/int32, any shape
    scale : ndarray, scalar or shape (q.shape[axis],)
    zero_point : ndarray or None, same shape as scale
    axis : int
        Channel axis for per-channel scales (negative values count from the end).
    """
    qf = q.astype(np.float32)
    s = np.asarray(scale, dtype=np.float32)
    z = np.zeros_like(s) if zero_point is None else np.asarray(zero_point).astype(np.float32)
    if s.ndim == 1 and s.size > 1 and qf.ndim > 0:
        shape = [1] * qf.ndim
        shape[axis % qf.ndim] = s.size
        s = s.reshape(shape)
        z = z.reshape(shape)
    return ((qf - z) * s).astype(np.float32)


def used_names(graph: onnx.GraphProto) -> set[str]:
    """Every value name read by a node of ``graph`` or of any subgraph inside it, and the graph's
    outputs; each subgraph is visited once."""
    used = {o.name for o in graph.output}
    stack = [graph]
    while stack:
        g = stack.pop()
        for node in g.node:
            used.update(node.input)
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return used


def drop_unused(graph: onnx.GraphProto) -> None:
    """Remove the main graph's nodes whose outputs nothing reads (a weight's ``Cast`` once the
    weight is fed instead: onnxruntime would fold it into a float32 copy), then the
    initializers that no node (in any subgraph) reads, in place."""
    while True:
        used = used_names(graph)
        live = [n for n in graph.node if any(o in used for o in n.output if o)]
        if len(live) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(live)
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


class GraphIndex:
    """Producers, consumers, initializers of one graph (and the scopes that enclose it).

    Parameters
    ----------
    graph : onnx.GraphProto
    outer : GraphIndex, optional
        The enclosing graph's index, for subgraphs of If/Loop/Scan (outer names are visible).
    """

    def __init__(self, graph: onnx.GraphProto, outer: "GraphIndex | None" = None):
        self.graph = graph
        self.outer = outer
        self.initializers = {t.name: t for t in graph.initializer}
        self.producers: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for out in node.output:
                if out:
                    self.producers[out] = node
            for inp in node.input:
                if inp:
                    self.consumers.setdefault(inp, []).append(node)
        self.graph_outputs = {o.name for o in graph.output}
        self._cache: dict[str, Const | None] = {}

    # -- structure -------------------------------------------------------------------------
    def producer(self, name: str) -> onnx.NodeProto | None:
        """The node that computes ``name`` in this graph, or None."""
        return self.producers.get(name)

    def consumers_of(self, name: str) -> list[onnx.NodeProto]:
        """Nodes of this graph that read ``name``."""
        return self.consumers.get(name, [])

    def subgraphs(self, node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
        """Subgraph attributes (If branches, Loop/Scan bodies) of ``node``."""
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield a.name, a.g
            elif a.type == onnx.AttributeProto.GRAPHS:
                for i, g in enumerate(a.graphs):
                    yield f"{a.name}[{i}]", g

    # -- constants -------------------------------------------------------------------------
    def is_constant(self, name: str) -> bool:
        """Whether ``name`` is a constant: an initializer, a ``Constant``, or a chain of foldable
        ops over constants. Answered from the graph's structure, without reading or folding any
        data (a model's weights are most of it); :meth:`constant` may still find such a chain
        inconsistent and return None."""
        return self._structural(name, {})

    def _structural(self, name: str, seen: dict) -> bool:
        if name in seen:
            return seen[name]
        seen[name] = False  # guards against cycles in malformed graphs
        if name in self.initializers:
            result = True
        elif name in self._cache:
            result = self._cache[name] is not None
        else:
            node = self.producers.get(name)
            if node is None:
                result = (self.outer is not None
                          and not any(i.name == name for i in self.graph.input)
                          and self.outer.is_constant(name))
            elif node.op_type not in _FOLDABLE or node.domain not in ("", "ai.onnx"):
                result = False
            else:
                result = node.op_type == "Constant" or all(
                    self._structural(i, seen) for i in node.input if i)
        seen[name] = result
        return result

    def constant(self, name: str) -> Const | None:
        """Evaluate ``name`` if it is constant, else None."""
        if not name:
            return None
        if name in self._cache:
            return self._cache[name]
        self._cache[name] = None  # guards against cycles in malformed graphs
        result = self._evaluate(name)
        self._cache[name] = result
        return result

    def _evaluate(self, name: str) -> Const | None:
        if name in self.initializers:
            t = self.initializers[name]
            n = int(np.prod(t.dims)) if len(t.dims) else 1
            if n > MAX_TENSOR_ELEMENTS:
                raise ModelError(f"tensor {name!r} has {n} elements, over the limit of "
                                 f"{MAX_TENSOR_ELEMENTS}")
            try:
                return _from_stored(tensor_array(t))
            except (ValueError, TypeError) as exc:
                raise ModelError(f"tensor {name!r}: its data does not fit its type and shape "
                                 f"({str(exc)[:120]})") from None
        node = self.producers.get(name)
        if node is None:
            if self.outer is not None and not any(i.name == name for i in self.graph.input):
                return self.outer.constant(name)
            return None
        if node.op_type not in _FOLDABLE or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type == "Constant":
            t = _attr(node, "value")
            if t is None:
                return None
            try:
                return _from_stored(tensor_array(t))
            except (ValueError, TypeError):
                raise ModelError(f"Constant {node.name!r}: its data does not fit its type and "
                                 "shape") from None
        ins = [self.constant(i) if i else None for i in node.input]
        if any(c is None for i, c in zip(node.input, ins) if i):
            return None
        try:
            return _fold(node, ins)
        except ModelError:  # a quantization that cannot be read as written: said as it is
            raise
        except Exception:  # an inconsistent constant chain: treat as non-constant
            return None


#: Float8 types read as float32, by numpy (ml_dtypes) name, and the quantization they report.
FLOAT8 = {"float8_e4m3fn": "fp8e4m3fn", "float8_e4m3fnuz": "fp8e4m3fnuz",
          "float8_e5m2": "fp8e5m2", "float8_e5m2fnuz": "fp8e5m2fnuz"}
#: 4-bit integer types, kept as stored (ml_dtypes) until they are dequantized.
INT4 = ("int4", "uint4")


def _from_stored(arr: np.ndarray) -> Const:
    """A stored tensor as the package reads it: float16 kept, bfloat16 and float8 read as
    float32 (float8 with each value's step), anything else as numpy gives it (int4 and uint4
    as ml_dtypes arrays, which DequantizeLinear and Cast turn into float32)."""
    if arr.dtype == np.float16:  # kept: layers hold float16 weights as stored
        return Const(arr, "fp16")
    if arr.dtype.name == "bfloat16":
        return Const(arr.astype(np.float32), "bf16")
    if arr.dtype.name in FLOAT8:
        value, steps = float_steps(arr)
        finite = steps[np.isfinite(steps)]
        return Const(value, FLOAT8[arr.dtype.name], float(finite.max(initial=0.0)), steps)
    return Const(arr)


def _integers(a: np.ndarray) -> bool:
    """Integer values, int4 and uint4 included."""
    return a.dtype.kind in "iu" or a.dtype.name in INT4


def _dequantize_linear(node: onnx.NodeProto, ins: list[Const | None]) -> Const:
    """A DequantizeLinear of constants: per tensor, per channel along ``axis``, or by blocks of
    ``block_size`` along it (opset 21); with each value's step where it has one of its own (by
    blocks, or from float8 input, whose steps are scaled)."""
    x, scale = ins[0], ins[1].value
    zero = ins[2].value if len(ins) > 2 and ins[2] is not None else None
    axis, block = int(_attr(node, "axis", 1)), int(_attr(node, "block_size", 0) or 0)
    narrow = x.value.dtype.name if x.value.dtype.name in INT4 else (
        x.quant if x.quant in FLOAT8.values() else "")
    if block:
        try:
            out, steps = blocked(x.value, scale, zero, axis, block)
        except ValueError as exc:
            raise ModelError(f"DequantizeLinear {node.name!r}: {exc}") from None
        quant = f"qdq {narrow or x.value.dtype.name} blocked"
        steps = steps if x.steps is None else steps * x.steps
    else:
        out = dequantize(x.value, scale, zero, axis)
        quant = f"qdq {narrow}" if narrow else "qdq"
        steps = None if x.steps is None else dequantize(x.steps, np.abs(scale), None, axis)
    step = max(x.step, float(np.max(np.abs(scale))))
    if steps is not None:
        step = float(np.max(steps, initial=0.0, where=np.isfinite(steps)))
    return Const(out, quant, step, steps)


def _fold(node: onnx.NodeProto, ins: list[Const | None]) -> Const:
    """The value of ``node`` over constants ``ins``, with the steps of its values carried where
    they have their own (:attr:`Const.steps`)."""
    if node.op_type == "DequantizeLinear":
        return _dequantize_linear(node, ins)
    out = _fold_value(node, ins)
    steps = _carried_steps(node, ins, out.value)
    if steps is None:
        return out
    return Const(out.value, out.quant, float(np.max(steps, initial=0.0, where=np.isfinite(steps))),
                 steps)


def _carried_steps(node: onnx.NodeProto, ins: list[Const | None], out: np.ndarray
                   ) -> np.ndarray | None:
    """The steps of ``node``'s output values, where its first input has steps of its own and
    the op moves values (a transpose, reshape, slice or gather), casts them between float types
    or scales them by a constant (a Mul); else None."""
    op = node.op_type
    own = [c for c in ins[:2] if c is not None and c.steps is not None]
    if not own or out.dtype.kind != "f":
        return None
    first = ins[0].steps if ins[0] is not None else None
    if op == "Mul" and len(own) == 1 and own[0].steps.shape == out.shape:
        other = ins[1] if own[0] is ins[0] else ins[0]
        return own[0].steps * np.abs(other.value.astype(np.float32))
    if first is None:
        return None
    if op in ("Identity", "Cast"):
        return first
    if op == "Transpose":
        return np.transpose(first, _attr(node, "perm"))
    if op in ("Reshape", "Squeeze", "Unsqueeze") and first.size == out.size:
        return first.reshape(out.shape)
    if op == "Gather":
        return np.take(first, ins[1].value.astype(np.int64), axis=int(_attr(node, "axis", 0)))
    if op == "Slice":
        return _sliced(node, [first] + [c.value if c is not None else None for c in ins[1:]])
    return None


def _fold_value(node: onnx.NodeProto, ins: list[Const | None]) -> Const:
    op = node.op_type
    quant = next((c.quant for c in ins if c is not None and c.quant), None)
    step = max((c.step for c in ins if c is not None), default=0.0)
    v = [c.value if c is not None else None for c in ins]
    if op == "Identity":
        return Const(v[0], quant, step)
    if op == "Cast":
        to = onnx.helper.tensor_dtype_to_np_dtype(_attr(node, "to"))
        src = v[0]
        if _integers(src) and np.dtype(to).kind == "f":
            quant = quant or "cast_mul"
        if src.dtype == np.float16 and np.dtype(to) == np.float32:
            return Const(src, "fp16", step)  # half-precision weights stay as stored (see _f32)
        return Const(src.astype(to, copy=False), quant, step)
    if op == "Transpose":
        perm = _attr(node, "perm")
        return Const(np.transpose(v[0], perm), quant, step)
    if op == "Mul":
        out = v[0] * v[1]
        if quant == "cast_mul":  # X_q cast to float, times X_scale
            scale = v[1] if ins[0].quant == "cast_mul" else v[0]
            step = max(step, float(np.max(np.abs(scale))))
        return Const(np.asarray(out, dtype=np.result_type(v[0], v[1])), quant, step)
    if op == "Sub":
        return Const(v[0] - v[1], quant, step)
    if op == "Reshape":
        return Const(v[0].reshape(_reshape_target(v[0].shape, v[1])), quant, step)
    if op == "Squeeze":
        axes = v[1] if len(v) > 1 and v[1] is not None else _attr(node, "axes")
        return Const(np.squeeze(v[0], axis=None if axes is None else tuple(int(a) for a in axes)),
                     quant, step)
    if op == "Unsqueeze":
        axes = v[1] if len(v) > 1 and v[1] is not None else _attr(node, "axes")
        out = v[0]
        for a in sorted(int(a) % (out.ndim + len(axes)) for a in axes):
            out = np.expand_dims(out, a)
        return Const(out, quant, step)
    if op == "Concat":  # a weight assembled from pieces (an LSTM's gates put in ONNX's order)
        return Const(np.concatenate(v, axis=int(_attr(node, "axis"))), quant, step)
    if op == "Gather":
        return Const(np.take(v[0], v[1].astype(np.int64), axis=int(_attr(node, "axis", 0))),
                     quant, step)
    if op == "Slice":
        return Const(_sliced(node, v), quant, step)
    raise ValueError(op)


def _sliced(node: onnx.NodeProto, v: list) -> np.ndarray:
    """A Slice of constants: bounds as inputs (opset 10 on) or attributes (before)."""
    data = v[0]
    if len(v) > 1:
        starts, ends = v[1], v[2]
        axes = v[3] if len(v) > 3 and v[3] is not None else np.arange(len(starts))
        steps = v[4] if len(v) > 4 and v[4] is not None else np.ones(len(starts), np.int64)
    else:
        starts, ends = _attr(node, "starts"), _attr(node, "ends")
        axes = _attr(node, "axes") or list(range(len(starts)))
        steps = [1] * len(starts)
    index = [slice(None)] * data.ndim
    for a, b, e, k in zip(axes, starts, ends, steps):
        index[int(a) % data.ndim] = slice(int(b), int(e), int(k))
    return data[tuple(index)]


def _reshape_target(shape: tuple, target: np.ndarray) -> list[int]:
    t = [int(d) for d in target]
    return [shape[i] if d == 0 else d for i, d in enumerate(t)]


#: Initializers shape inference may need the values of (shapes, axes, scalars) are kept as they
#: are; every other one is given to it by its type and shape alone.
_SHAPE_VALUE_TYPES = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
_SHAPE_VALUE_MAX = 4096


#: ``com.microsoft`` ops that onnxruntime's optimizer writes and onnx's shape inference does not
#: know, with a default-domain op of the same output shape (and the attributes it keeps).
_TWINS = {"FusedConv": ("Conv", {"auto_pad", "dilations", "group", "kernel_shape", "pads",
                                 "strides"}),
          "FusedGemm": ("Gemm", {"alpha", "beta", "transA", "transB"}),
          "BiasGelu": ("Add", set()), "QuickGelu": ("Identity", set()),
          "FastGelu": ("Identity", set()), "BiasAdd": ("Add", set())}


def _shape_twin(node: onnx.NodeProto) -> onnx.NodeProto:
    """``node``, or for a fused ``com.microsoft`` op its default-domain twin for shape inference
    (FusedConv as a Conv: the fused activation keeps the shape)."""
    twin = _TWINS.get(node.op_type) if node.domain == "com.microsoft" else None
    if twin is None:
        return node
    op, keep = twin
    inputs = list(node.input)
    if op == "Identity":
        inputs = inputs[:1]
    elif op == "Add":
        inputs = inputs[:2]
    elif op == "Conv":
        inputs = inputs[:3]  # a fourth input is the residual Z, added after
    return onnx.helper.make_node(op, inputs, list(node.output)[:1], name=node.name,
                                 **{a.name: onnx.helper.get_attribute_value(a)
                                    for a in node.attribute if a.name in keep})


def _block_quantized_twins(nodes: list) -> list:
    """Replace each com.microsoft MatMulNBits in ``nodes`` by a MatMul that shape inference
    knows, reading a stand-in weight of its shape ``(K, N)`` (its attributes; the packed blocks
    have another shape); the stand-ins' value infos, to be given as graph inputs."""
    stand_ins = []
    for k, node in enumerate(nodes):
        if node.domain != "com.microsoft" or node.op_type != "MatMulNBits" or not node.output:
            continue
        size = {a.name: a.i for a in node.attribute if a.name in ("K", "N")}
        if len(size) < 2 or not node.input:
            continue
        name = f"{node.output[0]}__weight_shape"
        nodes[k] = onnx.helper.make_node("MatMul", [node.input[0], name], [node.output[0]],
                                         name=node.name)
        stand_ins.append(onnx.helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT, [size["K"], size["N"]]))
    return stand_ins


def inferred_values(model: onnx.ModelProto, folded: dict | None = None
                    ) -> list[onnx.ValueInfoProto]:
    """Shapes of the main graph's values and outputs, as :func:`onnx.shape_inference.infer_shapes`
    gives them, without serializing the weights for it.

    Shape inference reads only the shapes of weight tensors, but serializes the whole model to
    run; a float initializer of more than 16 values is handed to it as a graph input of the same
    type and shape instead (for a 1M-parameter model that is most of the time it takes).
    ``folded`` maps ``(node index, input slot)`` to a value that input is known to hold (padding
    computed from constants or shapes): it is given to shape inference as a constant, so that
    the shapes after that node are known too. Raises what shape inference raises."""
    g = model.graph
    nodes = [_shape_twin(n) for n in g.node]
    kept, shaped = [], _block_quantized_twins(nodes)
    for (k, slot), value in (folded or {}).items():
        node = onnx.NodeProto()
        node.CopyFrom(nodes[k])
        name = f"{node.input[slot]}__folded_{k}_{slot}"
        node.input[slot] = name
        nodes[k] = node
        kept.append(onnx.numpy_helper.from_array(np.asarray(value), name))
    for t in g.initializer:
        size = int(np.prod(t.dims, dtype=np.int64))
        if size <= 16 or (t.data_type in _SHAPE_VALUE_TYPES and size <= _SHAPE_VALUE_MAX):
            kept.append(t)
        else:
            shaped.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    names = {i.name for i in g.input}
    light = onnx.helper.make_graph(nodes, g.name, list(g.input) + [v for v in shaped
                                                                        if v.name not in names],
                                   list(g.output), kept, value_info=list(g.value_info),
                                   sparse_initializer=list(g.sparse_initializer))
    shell = onnx.helper.make_model(light, opset_imports=list(model.opset_import),
                                   ir_version=model.ir_version, functions=list(model.functions))
    inferred = onnx.shape_inference.infer_shapes(shell, strict_mode=False)
    return list(inferred.graph.value_info) + list(inferred.graph.output)
