"""Canonical parametric layers of an ONNX model, whatever exported it.

Walks the graph in topological order (descending into If/Loop/Scan bodies) and lists every layer
that holds trained parameters, as float32 arrays in one orientation:

========================  ==================================================================
kind                      canonical ``weight`` shape
========================  ==================================================================
``dense``                 ``(out, in)``  from Gemm (either ``transB``), MatMul with a constant
                          operand (stored ``(in, out)``), QGemm, QLinearMatMul, MatMulInteger
``conv``                  ``(out, in/groups, *kernel)`` from Conv, QLinearConv, ConvInteger
``conv_transpose``        ``(out/groups, in, *kernel)`` (ONNX stores ``(in, out/groups, ...)``)
``batchnorm``             ``(C,)`` scale, with ``bias``, ``mean``, ``var``
``layernorm``             ``(C,)`` scale, with ``bias``
``groupnorm``             ``(C,)`` scale, with ``bias`` (``(G,)`` in opsets 18-20: one per group)
``prelu``                 ``(C,)`` slope of a PRelu with one slope per unit
``embedding``             ``(dim, vocab)`` (a dense layer on one-hot inputs)
``lstm``/``gru``/``rnn``  ``W`` as stored ``(dirs, gates*hidden, in)``, plus ``recurrent``
``linear``                ``(classes, features)`` from ai.onnx.ml LinearClassifier/Regressor
========================  ==================================================================

The bias of a MatMul/Conv without one of its own is taken from the ``Add`` that follows it. Each
parameter keeps its :class:`Site` (node and input slot, or attribute) and the transform from the
canonical orientation back to the stored one, so weights can be written back into the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from onnx_lineage.errors import ModelError
from onnx_lineage.model.blockquant import dequantize_nbits, gather_blocks
from onnx_lineage.model.graph import Const, GraphIndex, attr, dequantize
from onnx_lineage.model.weights import release_pages

#: Layers with one slice of every parameter per unit: they follow a permutation of the units.
PER_UNIT = ("batchnorm", "layernorm", "prelu", "groupnorm")


@dataclass(frozen=True)
class Site:
    """Where a parameter is stored, and how to turn the canonical array back into it.

    Attributes
    ----------
    node : str
        Name of the consuming node (made unique at load time when empty).
    slot : int or str
        Input index of the node, or attribute name (``LinearClassifier`` coefficients).
    shape : tuple of int
        The stored shape.
    to_stored : str
        ``"identity"``, ``"transpose"`` (2-D), ``"swap01"`` or ``"flat"``.
    writable : bool
        False when the stored value is quantized or inside a subgraph: it cannot be overwritten
        with a float array without changing the graph.
    """

    node: str
    slot: int | str
    shape: tuple
    to_stored: str = "identity"
    writable: bool = True

    def stored_view(self, canonical: np.ndarray) -> np.ndarray:
        """The canonical array in this site's stored orientation and shape, in its own dtype: a
        view where that is one (a transposed weight is read in place, not copied)."""
        a = canonical
        if self.to_stored == "transpose":
            a = a.T
        elif self.to_stored == "swap01":
            a = np.swapaxes(a, 0, 1)
        return a if a.shape == tuple(self.shape) else a.reshape(self.shape)

    def store(self, canonical: np.ndarray) -> np.ndarray:
        """The canonical array in this site's stored orientation and shape, float32, contiguous."""
        return np.ascontiguousarray(self.stored_view(canonical), dtype=np.float32)


@dataclass
class Layer:
    """One parametric layer in canonical form.

    Attributes
    ----------
    index : int
        Position among the model's parametric layers (graph order).
    kind : str
        See the module table.
    node : str
        Name of the node that holds the main weight.
    op : str
        Its op type (``Gemm``, ``QLinearConv``, ...).
    params : dict of str to ndarray (float32)
        ``weight`` (and ``bias``, ``mean``, ``var``, ``recurrent`` by kind), canonical orientation.
    sites : dict of str to Site
        Where each parameter lives in the graph.
    quant : str or None
        ``qdq``, ``qoperator``, ``dynamic``, ``cast_mul``, ``fp16``, ``bf16``; ``int4``
        (``int2``, ``int8``) for block-quantized MatMulNBits and GatherBlockQuantized weights;
        a float8 type (``fp8e4m3fn``, ``fp8e4m3fnuz``, ``fp8e5m2``, ``fp8e5m2fnuz``); ``qdq int4``
        (``qdq uint4``, ``qdq fp8e4m3fn``, ...) for DequantizeLinear of 4-bit or float8 values,
        ``qdq int4 blocked`` (``qdq uint4 blocked``, ``qdq int8 blocked``, ...) with its
        ``block_size`` (:class:`.graph.Const`).
    step : float
        Largest quantization step of the weight (0 for float).
    output : str
        The tensor holding the layer's output (after its bias Add).
    input : str
        The tensor the layer reads (its data input).
    groups : int
        Convolution groups (1 otherwise).
    scope : str
        ``""`` for the main graph, else the path of the subgraph.
    folded_bn : str
        Name of the BatchNormalization node folded into this layer's parameters (by
        :func:`onnx_lineage.matching.batchnorm.fold`), else ``""``.
    internal : tuple of str
        For a normalisation written as separate ops (``ReduceMean``, ``Sub``, ``Pow`` ...):
        the names of those nodes, which read the units between ``input`` and ``output``.
    activation : str
        An activation fused into the layer (onnxruntime's FusedConv, FusedGemm, BiasGelu):
        ``output`` is after it. Empty when none is.
    steps : ndarray or None
        For block-quantized and float8 weights, each value's own quantization step (its
        block's scale; its float8 spacing, times its scale), in the weight's canonical shape
        (``step`` is their largest).
    """

    index: int
    kind: str
    node: str
    op: str
    params: dict
    sites: dict = field(default_factory=dict)
    quant: str | None = None
    step: float = 0.0
    output: str = ""
    input: str = ""
    groups: int = 1
    scope: str = ""
    folded_bn: str = ""
    internal: tuple = ()
    activation: str = ""
    steps: np.ndarray | None = field(default=None, repr=False)

    @property
    def weight(self) -> np.ndarray:
        """The main weight, canonical orientation, float32."""
        return self.params["weight"]

    @property
    def n_params(self) -> int:
        """Number of parameters across all arrays of the layer."""
        return int(sum(p.size for p in self.params.values()))

    @property
    def units(self) -> int:
        """Output units (rows of the canonical weight)."""
        return int(self.weight.shape[0])

    def summary(self) -> dict:
        """Kind, op, shapes and counts, for tables and JSON."""
        return {"index": self.index, "kind": self.kind, "op": self.op, "node": self.node,
                "shape": list(self.weight.shape), "params": self.n_params,
                "quantization": self.quant, "scope": self.scope or None}


def kept(a: np.ndarray) -> np.ndarray:
    """A weight in the precision the analyses hold it in: float16 stays float16 (half the memory,
    a view of the mapped file; a permutation is exact in it), anything else float32 (no copy
    when it already is). Computations widen float16 where they read it (:func:`as_single`)."""
    a = np.asarray(a)
    return a if a.dtype == np.float16 else a.astype(np.float32, copy=False)


def as_single(a: np.ndarray) -> np.ndarray:
    """``a`` as float32 (no copy when it is). float16 in either memory order (a weight read
    transposed is Fortran-ordered) is widened by the branchless kernel
    :func:`kernels.blend.widen_half` (exact, about twice as fast as numpy's cast here; numba is
    imported only when a half-precision model needs it), keeping the order; other strided arrays
    by numpy's cast."""
    a = np.asarray(a)
    if a.dtype != np.float16:
        return np.asarray(a, dtype=np.float32)
    if not a.flags.c_contiguous:
        return as_single(a.T).T if a.T.flags.c_contiguous else np.asarray(a, dtype=np.float32)
    from kernels.blend import widen_half
    out = np.empty(a.shape, np.uint32)
    widen_half(a.view(np.uint16).reshape(-1), out.reshape(-1))
    return out.view(np.float32)


def _f32(c: Const | None) -> np.ndarray | None:
    """The constant in its kept precision (:func:`kept`)."""
    return None if c is None else kept(c.value)


def _name_nodes(graph: onnx.GraphProto, prefix: str) -> None:
    """Give every unnamed node a unique name, so sites can refer to nodes."""
    seen = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{prefix}{node.op_type}_{i}"
        seen.add(node.name)


class _Walker:
    """Builds the layer list; one instance per model."""

    def __init__(self):
        self.layers: list[Layer] = []
        self.subgraphs = 0

    def walk(self, graph: onnx.GraphProto, outer: GraphIndex | None = None, scope: str = "") -> None:
        # unnamed nodes of a subgraph are named after a short id of it, not its path: nested
        # subgraphs would otherwise repeat every enclosing path in every name
        self.subgraphs += bool(scope)
        _name_nodes(graph, f"s{self.subgraphs}/" if scope else "")
        g = GraphIndex(graph, outer)
        for node in graph.node:
            handler = _HANDLERS.get((node.domain or "ai.onnx", node.op_type))
            if handler is not None:
                try:
                    layer = handler(g, node)
                except (ValueError, IndexError, TypeError, KeyError) as exc:
                    raise ModelError(f"node {node.name!r} ({node.op_type}) is malformed: "
                                     f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
                                     ) from None
                if layer is not None:
                    layer.activation = _fused_activation(g, node, layer)
                    _check_finite(layer)
                    release_pages()  # read once to check: not held while the rest is read
                    layer.index = len(self.layers)
                    layer.scope = scope
                    if scope:
                        layer.sites = {k: _readonly(s) for k, s in layer.sites.items()}
                    self.layers.append(layer)
            for aname, sub in g.subgraphs(node):
                self.walk(sub, g, f"{scope}/{node.name}.{aname}" if scope else f"{node.name}.{aname}")


def _fused_activation(g: GraphIndex, node: onnx.NodeProto, layer: Layer) -> str:
    """The activation a fused op applies before the layer's output: FusedConv's and FusedGemm's
    ``activation`` attribute, or a bias taken from a BiasGelu/FastGelu."""
    act = attr(node, "activation") if node.domain == "com.microsoft" else None
    if act:
        return act.decode() if isinstance(act, bytes) else str(act)
    end = g.producer(layer.output)
    return FUSED_BIAS.get(end.op_type, "") if end is not None and end is not node else ""


def _check_finite(layer: Layer) -> None:
    for key, value in layer.params.items():
        if not np.all(np.isfinite(value)):
            raise ModelError(f"node {layer.node!r} ({layer.op}): its {key} contains NaN or Inf")


def _readonly(site: Site) -> Site:
    return Site(site.node, site.slot, site.shape, site.to_stored, False)


#: onnxruntime's fused bias-and-activation ops, by the activation they apply after the bias.
FUSED_BIAS = {"BiasGelu": "Gelu", "FastGelu": "Gelu"}


def _per_tensor(g: GraphIndex, q: onnx.NodeProto) -> bool:
    """A QuantizeLinear with one scale for the whole tensor."""
    c = g.constant(q.input[1]) if len(q.input) > 1 else None
    return c is not None and c.value.size == 1


def _bias_add(g: GraphIndex, out: str, n_out: int, channel_axis: int
              ) -> tuple[np.ndarray | None, Site | None, str]:
    """Find a bias ``Add`` right after a layer output (also after a per-tensor Q/DQ pair, as
    static QDQ quantization writes, and as the bias input of a fused ``BiasGelu``/``FastGelu``);
    returns (bias, site, new output)."""
    cons = g.consumers_of(out)
    if (len(cons) == 1 and cons[0].op_type == "QuantizeLinear" and out not in g.graph_outputs
            and _per_tensor(g, cons[0])):  # static QDQ: the product re-quantized before its bias
        after = g.consumers_of(cons[0].output[0])
        if len(after) == 1 and after[0].op_type == "DequantizeLinear":
            through = after[0].output[0]
            bias, site, end = _bias_add(g, through, n_out, channel_axis)
            return (bias, site, end) if bias is not None else (None, None, out)
    if len(cons) != 1 or cons[0].op_type not in ("Add", *FUSED_BIAS) or out in g.graph_outputs:
        return None, None, out
    add = cons[0]
    if add.op_type != "Add" and (add.input[0] != out or len(add.input) < 2):
        return None, None, out
    slot = 1 if add.input[0] == out else 0
    c = g.constant(add.input[slot])
    if c is None or c.value.size != n_out:
        return None, None, out
    shape = c.value.shape
    # the bias must broadcast along the unit axis: (n,), (1, n) for dense, (1, n, 1, 1) for conv
    if len(shape) > 1 and shape[channel_axis if channel_axis >= 0 else len(shape) + channel_axis] != n_out:
        return None, None, out
    return _f32(c).reshape(-1), Site(add.name, slot, tuple(shape), "identity", True), add.output[0]


def _dense_from_matmul(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    w = g.constant(node.input[1])
    if w is None or w.value.ndim != 2 or g.is_constant(node.input[0]):
        return None
    weight = _f32(w).T
    bias, bsite, out = _bias_add(g, node.output[0], weight.shape[0], -1)
    params = {"weight": weight}
    sites = {"weight": Site(node.name, 1, w.value.shape, "transpose", True)}
    if bias is not None:
        params["bias"], sites["bias"] = bias, bsite
    return Layer(0, "dense", node.name, node.op_type, params, sites, quant=w.quant, step=w.step,
                 output=out, input=node.input[0], steps=_steps(w, np.transpose))


def _steps(c: Const, to_canonical=None) -> np.ndarray | None:
    """The steps of a constant's values in the canonical orientation (``to_canonical`` turns
    the stored one into it), where it has its own (:attr:`Const.steps`); float32."""
    if c.steps is None:
        return None
    steps = c.steps if to_canonical is None else to_canonical(c.steps)
    return np.ascontiguousarray(steps, dtype=np.float32)


def _matmul_nbits(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    """A com.microsoft MatMulNBits: 2/4/8-bit block-quantized weight (:mod:`.blockquant`)."""
    ins = [g.constant(i) if i else None for i in list(node.input) + [""] * (6 - len(node.input))]
    packed, scales, zero, g_idx, bias = ins[1], ins[2], ins[3], ins[4], ins[5]
    if packed is None or scales is None or g.is_constant(node.input[0]):
        return None
    k, n = int(attr(node, "K")), int(attr(node, "N"))
    weight, steps = dequantize_nbits(
        packed.value, scales.value, None if zero is None else zero.value, k, n,
        int(attr(node, "bits", 4)), int(attr(node, "block_size")),
        None if g_idx is None else g_idx.value)
    params = {"weight": weight}
    sites = {"weight": Site(node.name, 1, packed.value.shape, "identity", False)}
    out = node.output[0]
    if bias is not None:
        params["bias"] = _f32(bias).reshape(-1)
        sites["bias"] = Site(node.name, 5, bias.value.shape, "identity", True)
    else:
        b, bsite, out = _bias_add(g, out, n, -1)
        if b is not None:
            params["bias"], sites["bias"] = b, bsite
    return Layer(0, "dense", node.name, node.op_type, params, sites,
                 quant=f"int{attr(node, 'bits', 4)}", step=float(np.max(steps)), output=out,
                 input=node.input[0], steps=steps)


def _dense_from_gemm(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    w = g.constant(node.input[1])
    if w is None or w.value.ndim != 2 or attr(node, "transA", 0):
        return None
    trans_b = attr(node, "transB", 0)
    alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    weight = _f32(w) * np.float32(alpha)
    if not trans_b:
        weight = weight.T
    params = {"weight": np.ascontiguousarray(weight)}
    sites = {"weight": Site(node.name, 1, w.value.shape, "identity" if trans_b else "transpose",
                            alpha == 1.0)}
    out = node.output[0]
    if len(node.input) > 2 and node.input[2]:
        c = g.constant(node.input[2])
        if c is not None and c.value.size == weight.shape[0]:
            params["bias"] = _f32(c).reshape(-1) * np.float32(beta)
            sites["bias"] = Site(node.name, 2, c.value.shape, "identity", beta == 1.0)
    else:
        bias, bsite, out = _bias_add(g, out, weight.shape[0], -1)
        if bias is not None:
            params["bias"], sites["bias"] = bias, bsite
    steps = _steps(w, lambda a: np.abs(np.float32(alpha)) * (a if trans_b else a.T))
    return Layer(0, "dense", node.name, node.op_type, params, sites, quant=w.quant, step=w.step,
                 output=out, input=node.input[0], steps=steps)


def _conv(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    w = g.constant(node.input[1])
    if w is None or w.value.ndim < 3:
        return None
    if node.op_type == "FusedConv" and len(node.input) > 3 and node.input[3]:
        return None  # a residual sum fused in: not one layer's units (its weights go unread)
    transpose = node.op_type == "ConvTranspose"
    groups = int(attr(node, "group", 1))
    weight = _f32(w)
    if transpose:
        weight = np.ascontiguousarray(np.swapaxes(weight, 0, 1))
    params = {"weight": weight}
    sites = {"weight": Site(node.name, 1, w.value.shape, "swap01" if transpose else "identity",
                            True)}
    out = node.output[0]
    if len(node.input) > 2 and node.input[2]:
        c = g.constant(node.input[2])
        if c is not None:
            params["bias"] = _f32(c).reshape(-1)
            sites["bias"] = Site(node.name, 2, c.value.shape, "identity", True)
    else:
        n_out = weight.shape[0] * (groups if transpose else 1)
        bias, bsite, out = _bias_add(g, out, n_out, 1)
        if bias is not None:
            params["bias"], sites["bias"] = bias, bsite
    kind = "conv_transpose" if transpose else "conv"
    return Layer(0, kind, node.name, node.op_type, params, sites, quant=w.quant, step=w.step,
                 output=out, input=node.input[0], groups=groups,
                 steps=_steps(w, (lambda a: np.swapaxes(a, 0, 1)) if transpose else None))


def _batchnorm(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    cs = [g.constant(i) for i in node.input[1:5]]
    if any(c is None for c in cs):
        return None
    names = ("weight", "bias", "mean", "var")
    params = {n: _f32(c).reshape(-1) for n, c in zip(names, cs)}
    params["eps"] = np.array([attr(node, "epsilon", 1e-5)], dtype=np.float32)
    sites = {n: Site(node.name, i + 1, c.value.shape, "identity", True)
             for i, (n, c) in enumerate(zip(names, cs))}
    return Layer(0, "batchnorm", node.name, node.op_type, params, sites, quant=cs[0].quant,
                 output=node.output[0], input=node.input[0])


def _layernorm(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    s = g.constant(node.input[1])
    if s is None:
        return None
    params, sites = {"weight": _f32(s).reshape(-1)}, {"weight": Site(node.name, 1, s.value.shape)}
    if len(node.input) > 2 and node.input[2]:
        b = g.constant(node.input[2])
        if b is not None:
            params["bias"], sites["bias"] = _f32(b).reshape(-1), Site(node.name, 2, b.value.shape)
    return Layer(0, "layernorm", node.name, node.op_type, params, sites, quant=s.quant,
                 output=node.output[0], input=node.input[0])


def _groupnorm(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    """A GroupNormalization: its scale and bias, and its groups (``Layer.groups``), within which
    alone the channels stay permutable."""
    layer = _layernorm(g, node)
    if layer is None:
        return None
    groups = int(attr(node, "num_groups", 1))
    if groups < 1 or layer.params["weight"].size < 1:  # malformed: the op stops the units
        return None
    return Layer(0, "groupnorm", node.name, node.op_type, layer.params, layer.sites,
                 quant=layer.quant, output=node.output[0], input=node.input[0], groups=groups)


def _decomposed_norm(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    """A LayerNorm or RMSNorm over the last axis written as ops, found at its first
    ``ReduceMean``: ``d = x - mean(x)`` (LayerNorm; RMSNorm: ``d = x``), ``d / sqrt(mean(d^2) +
    eps)`` (or ``d * 1/sqrt(...)``), times a constant scale, plus a constant bias (optional)."""
    if not last_axis_mean(g, node):
        return None
    x, internal = node.input[0], [node.name]
    centre = _only_consumer(g, node.output[0], "Sub")
    if centre is not None and list(centre.input) == [x, node.output[0]]:
        d, square = centre.output[0], None  # LayerNorm: this ReduceMean is the mean
        internal.append(centre.name)
    else:  # RMSNorm: this ReduceMean is the mean of the squares
        square = g.producer(x)
        if not is_square(g, square):
            return None
        d = square.input[0]
        sub = g.producer(d)
        if sub is not None and sub.op_type == "Sub" and last_axis_mean(g, g.producer(sub.input[1])):
            return None  # the variance of a LayerNorm found at its mean
        x = d
        internal.append(square.name)
    tail = _normalise_tail(g, d, node.output[0] if square is not None else None)
    if tail is None:
        return None
    nodes, y = tail
    internal += [n.name for n in nodes]
    mul = _only_consumer(g, y, "Mul")
    if mul is None:
        return None
    scale = g.constant(mul.input[1] if mul.input[0] == y else mul.input[0])
    if scale is None or scale.value.ndim < 1 or scale.value.size != scale.value.shape[-1]:
        return None
    n = scale.value.size
    slot = 1 if mul.input[0] == y else 0
    params = {"weight": _f32(scale).reshape(-1)}
    sites = {"weight": Site(mul.name, slot, scale.value.shape)}
    bias, site, out = _bias_add(g, mul.output[0], n, -1)
    if bias is not None:
        params["bias"], sites["bias"] = bias, site
        internal.append(g.consumers_of(mul.output[0])[0].name)
    return Layer(0, "layernorm", mul.name, "LayerNormalization (as ops)" if square is None
                 else "RMSNormalization (as ops)", params, sites, quant=scale.quant, output=out,
                 input=x,
                 internal=tuple(internal + [mul.name]))


def last_axis_mean(g: GraphIndex, node: onnx.NodeProto | None) -> bool:
    """A ReduceMean over the last axis alone, keeping it (the mean of an RMS norm)."""
    if node is None or node.op_type != "ReduceMean" or not int(attr(node, "keepdims", 1)):
        return False
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        c = g.constant(node.input[1])
        axes = None if c is None else [int(a) for a in np.asarray(c.value).reshape(-1)]
    return axes is not None and list(axes) == [-1]


def _only_consumer(g: GraphIndex, name: str, op: str) -> onnx.NodeProto | None:
    cons = g.consumers_of(name)
    return cons[0] if len(cons) == 1 and cons[0].op_type == op else None


def is_square(g: GraphIndex, node: onnx.NodeProto | None) -> bool:
    """``Pow(d, 2)`` or ``Mul(d, d)``."""
    if node is None:
        return False
    if node.op_type == "Mul":
        return node.input[0] == node.input[1]
    if node.op_type != "Pow":
        return False
    c = g.constant(node.input[1])
    return c is not None and c.value.size == 1 and float(c.value.reshape(-1)[0]) == 2.0


def _normalise_tail(g: GraphIndex, d: str, mean_square: str | None):
    """From the centred ``d`` (and, for an RMSNorm, the mean of its squares already found) to
    ``d / sqrt(mean(d^2) + eps)``: the nodes on the way and the normalised tensor."""
    nodes = []
    if mean_square is None:
        square = next((c for c in g.consumers_of(d) if is_square(g, c)), None)
        if square is None:
            return None
        mean = _only_consumer(g, square.output[0], "ReduceMean")
        if mean is None or not last_axis_mean(g, mean):
            return None
        nodes += [square, mean]
        mean_square = mean.output[0]
    add = _only_consumer(g, mean_square, "Add")
    sqrt = add and _only_consumer(g, add.output[0], "Sqrt")
    if sqrt is None:
        return None
    nodes += [add, sqrt]
    div = _only_consumer(g, sqrt.output[0], "Div")
    if div is not None and list(div.input) == [d, sqrt.output[0]]:
        return nodes + [div], div.output[0]
    inv = _only_consumer(g, sqrt.output[0], "Reciprocal")
    mul = inv and _only_consumer(g, inv.output[0], "Mul")
    if mul is not None and set(mul.input) == {d, inv.output[0]}:
        return nodes + [inv, mul], mul.output[0]
    return None


def _prelu(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    """A PRelu with a trained slope per unit (a scalar slope treats every unit alike: no layer)."""
    c = g.constant(node.input[1])
    if c is None or c.value.size < 2 or c.value.size != max(c.value.shape):
        return None
    return Layer(0, "prelu", node.name, node.op_type, {"weight": _f32(c).reshape(-1)},
                 {"weight": Site(node.name, 1, c.value.shape)}, quant=c.quant,
                 output=node.output[0], input=node.input[0])


def _embedding(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    table = g.constant(node.input[0])
    if table is None or table.value.ndim != 2 or g.is_constant(node.input[1]):
        return None
    if attr(node, "axis", 0) != 0:
        return None
    out, quant, step, writable = node.output[0], table.quant, table.step, True
    if table.value.dtype.kind != "f":
        # quantize_dynamic gathers int8 rows, then dequantizes them: Gather -> DequantizeLinear
        cons = g.consumers_of(node.output[0])
        if len(cons) != 1 or cons[0].op_type != "DequantizeLinear":
            return None  # integer tables (shape gathers) are not embeddings
        scale = g.constant(cons[0].input[1])
        zp = g.constant(cons[0].input[2]) if len(cons[0].input) > 2 and cons[0].input[2] else None
        if scale is None or scale.value.size != 1:
            return None
        value = dequantize(table.value, scale.value, None if zp is None else zp.value)
        table = Const(value, "dynamic", float(np.abs(scale.value).max()))
        out, quant, step, writable = cons[0].output[0], "dynamic", table.step, False
    return Layer(0, "embedding", node.name, node.op_type, {"weight": _f32(table).T},
                 {"weight": Site(node.name, 0, table.value.shape, "transpose", writable)},
                 quant=quant, step=step, output=out, input=node.input[1],
                 steps=_steps(table, np.transpose))


def _gather_block_quantized(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    """A com.microsoft GatherBlockQuantized over a 2-D table gathered by rows (an embedding):
    4-bit values packed in uint8 (or 2- and 8-bit, by ``bits``), int4/uint4 or float8 values,
    scaled by blocks of ``block_size`` along ``quantize_axis``, with zero points or without
    (:func:`.blockquant.gather_blocks`)."""
    ins = [g.constant(i) if i else None for i in list(node.input) + [""] * (4 - len(node.input))]
    data, scales, zero = ins[0], ins[2], ins[3]
    if data is None or scales is None or g.is_constant(node.input[1]):
        return None
    if data.value.ndim != 2 or int(attr(node, "gather_axis", 0)) not in (0, -2):
        return None  # not an embedding: gathered along its columns, or of another rank
    table, steps = gather_blocks(
        data.value, scales.value, None if zero is None else zero.value,
        int(attr(node, "bits", 4)), int(attr(node, "block_size", 128)),
        int(attr(node, "quantize_axis", 1)))
    if data.steps is not None:  # float8 values: their own spacing, scaled
        steps = steps * data.steps
    quant = data.quant if data.quant else f"int{attr(node, 'bits', 4)}"
    finite = steps[np.isfinite(steps)]
    return Layer(0, "embedding", node.name, node.op_type, {"weight": np.ascontiguousarray(table.T)},
                 {"weight": Site(node.name, 0, data.value.shape, "transpose", False)},
                 quant=quant, step=float(finite.max(initial=0.0)), output=node.output[0],
                 input=node.input[1], steps=np.ascontiguousarray(steps.T))


def _recurrent(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    w, r = g.constant(node.input[1]), g.constant(node.input[2])
    if w is None or r is None:
        return None
    params = {"weight": _f32(w), "recurrent": _f32(r)}
    sites = {"weight": Site(node.name, 1, w.value.shape), "recurrent": Site(node.name, 2, r.value.shape)}
    if len(node.input) > 3 and node.input[3]:
        b = g.constant(node.input[3])
        if b is not None:
            params["bias"], sites["bias"] = _f32(b), Site(node.name, 3, b.value.shape)
    return Layer(0, node.op_type.lower(), node.name, node.op_type, params, sites, quant=w.quant,
                 step=w.step, output=node.output[0], input=node.input[0])


def _linear_ml(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    coef = np.asarray(attr(node, "coefficients", []), dtype=np.float32)
    icpt = np.asarray(attr(node, "intercepts", []), dtype=np.float32)
    n_out = max(icpt.size, int(attr(node, "targets", 1) or 1))
    if coef.size == 0 or coef.size % n_out:
        return None
    weight = coef.reshape(n_out, -1)
    params, sites = {"weight": weight}, {"weight": Site(node.name, "coefficients", (coef.size,), "flat")}
    if icpt.size == n_out:
        params["bias"], sites["bias"] = icpt, Site(node.name, "intercepts", (icpt.size,), "flat")
    return Layer(0, "linear", node.name, node.op_type, params, sites, output=node.output[-1],
                 input=node.input[0])


# -- quantized operators ----------------------------------------------------------------------

def _qgemm(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    cs = [g.constant(node.input[i]) for i in (1, 3, 4, 5)]
    if any(c is None for c in cs):
        return None
    a_scale, wq, w_scale, w_zp = (c.value for c in cs)
    trans_b = attr(node, "transB", 0)
    w = dequantize(wq, w_scale, w_zp, axis=0 if trans_b else 1)
    weight = w if trans_b else w.T
    params = {"weight": np.ascontiguousarray(weight)}
    if len(node.input) > 6 and node.input[6]:
        c = g.constant(node.input[6])
        if c is not None:
            params["bias"] = (c.value.astype(np.float32) * a_scale * w_scale).reshape(-1)
    sites = {"weight": Site(node.name, 3, wq.shape, "identity" if trans_b else "transpose", False)}
    return Layer(0, "dense", node.name, node.op_type, params, sites, quant="qoperator",
                 step=float(np.max(np.abs(w_scale))), output=node.output[0], input=node.input[0])


def _qlinear(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    """QLinearConv (x, xs, xz, w, ws, wz, ys, yz, B) and QLinearMatMul (a, as, az, b, bs, bz, ...)."""
    cs = [g.constant(node.input[i]) for i in (1, 3, 4, 5)]
    if any(c is None for c in cs):
        return None
    x_scale, wq, w_scale, w_zp = (c.value for c in cs)
    conv = node.op_type == "QLinearConv"
    w = dequantize(wq, w_scale, w_zp, axis=0 if conv else 1)
    params = {"weight": w if conv else np.ascontiguousarray(w.T)}
    out = node.output[0]
    if conv and len(node.input) > 8 and node.input[8]:
        c = g.constant(node.input[8])
        if c is not None:
            params["bias"] = (c.value.astype(np.float32) * x_scale * w_scale).reshape(-1)
    elif not conv:
        bias, _, out = _qlinear_add_bias(g, node, params["weight"].shape[0])
        if bias is not None:
            params["bias"] = bias
    sites = {"weight": Site(node.name, 3, wq.shape, "identity" if conv else "transpose", False)}
    return Layer(0, "conv" if conv else "dense", node.name, node.op_type, params, sites,
                 quant="qoperator", step=float(np.max(np.abs(w_scale))), output=out,
                 input=node.input[0], groups=int(attr(node, "group", 1)))


def _qlinear_add_bias(g: GraphIndex, node: onnx.NodeProto, n_out: int):
    """Bias of a QLinearMatMul kept in a following com.microsoft QLinearAdd."""
    cons = g.consumers_of(node.output[0])
    if len(cons) != 1 or cons[0].op_type != "QLinearAdd":
        return None, None, node.output[0]
    add = cons[0]  # inputs: A, As, Az, B, Bs, Bz, Cs, Cz
    a_is_ours = add.input[0] == node.output[0]
    base = 3 if a_is_ours else 0
    cs = [g.constant(add.input[base + i]) for i in range(3)]
    if any(c is None for c in cs) or cs[0].value.size != n_out:
        return None, None, node.output[0]
    return dequantize(cs[0].value, cs[1].value, cs[2].value).reshape(-1), None, add.output[0]


def _integer(g: GraphIndex, node: onnx.NodeProto) -> Layer | None:
    """MatMulInteger / ConvInteger from quantize_dynamic: the weight scale sits in a later Mul."""
    wq = g.constant(node.input[1])
    if wq is None:
        return None
    w_zp = g.constant(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    conv = node.op_type == "ConvInteger"
    out, w_scale = _integer_scale(g, node.output[0])
    if w_scale is None:
        return None
    w = dequantize(wq.value, w_scale, None if w_zp is None else w_zp.value, axis=0 if conv else 1)
    weight = w if conv else np.ascontiguousarray(w.T)
    params = {"weight": weight}
    bias, _, out = _bias_add(g, out, weight.shape[0], 1 if conv else -1)
    if bias is not None:
        params["bias"] = bias
    sites = {"weight": Site(node.name, 1, wq.value.shape, "identity" if conv else "transpose", False)}
    return Layer(0, "conv" if conv else "dense", node.name, node.op_type, params, sites,
                 quant="dynamic", step=float(np.max(np.abs(w_scale))), output=out,
                 input=node.input[0], groups=int(attr(node, "group", 1)))


def _integer_scale(g: GraphIndex, out: str) -> tuple[str, np.ndarray | None]:
    """Follow ``Cast -> Mul(., a_scale * w_scale)`` and return (Mul output, w_scale)."""
    cons = g.consumers_of(out)
    if len(cons) != 1 or cons[0].op_type != "Cast":
        return out, None
    cast_out = cons[0].output[0]
    cons = g.consumers_of(cast_out)
    if len(cons) != 1 or cons[0].op_type != "Mul":
        return out, None
    mul = cons[0]
    other = mul.input[1] if mul.input[0] == cast_out else mul.input[0]
    c = g.constant(other)
    if c is not None:  # scale folded into one constant
        return mul.output[0], c.value
    scale_node = g.producer(other)
    if scale_node is None or scale_node.op_type != "Mul":
        return out, None
    for name in scale_node.input:
        c = g.constant(name)
        if c is not None:
            return mul.output[0], c.value
    return out, None


_HANDLERS = {
    ("ai.onnx", "Gemm"): _dense_from_gemm,
    ("ai.onnx", "MatMul"): _dense_from_matmul,
    ("ai.onnx", "Conv"): _conv,
    ("com.microsoft", "FusedConv"): _conv,
    ("com.microsoft", "FusedGemm"): _dense_from_gemm,
    ("com.microsoft", "MatMulNBits"): _matmul_nbits,
    ("ai.onnx", "ConvTranspose"): _conv,
    ("ai.onnx", "BatchNormalization"): _batchnorm,
    ("ai.onnx", "LayerNormalization"): _layernorm,
    ("com.microsoft", "LayerNormalization"): _layernorm,
    ("com.microsoft", "SimplifiedLayerNormalization"): _layernorm,
    ("ai.onnx", "SimplifiedLayerNormalization"): _layernorm,  # onnxruntime runs it there too
    ("ai.onnx", "RMSNormalization"): _layernorm,
    ("ai.onnx", "GroupNormalization"): _groupnorm,
    ("ai.onnx", "ReduceMean"): _decomposed_norm,
    ("ai.onnx", "PRelu"): _prelu,
    ("ai.onnx", "Gather"): _embedding,
    ("com.microsoft", "GatherBlockQuantized"): _gather_block_quantized,
    ("ai.onnx", "LSTM"): _recurrent,
    ("ai.onnx", "GRU"): _recurrent,
    ("ai.onnx", "RNN"): _recurrent,
    ("ai.onnx.ml", "LinearClassifier"): _linear_ml,
    ("ai.onnx.ml", "LinearRegressor"): _linear_ml,
    ("com.microsoft", "QGemm"): _qgemm,
    ("ai.onnx", "QLinearConv"): _qlinear,
    ("ai.onnx", "QLinearMatMul"): _qlinear,
    ("ai.onnx", "MatMulInteger"): _integer,
    ("ai.onnx", "ConvInteger"): _integer,
}


def extract_layers(model: onnx.ModelProto) -> list[Layer]:
    """Canonical parametric layers of ``model``, in graph order.

    The model's nodes are given unique names in place if they lack them (so that sites can point at
    them). Everything else is left untouched.

    Returns
    -------
    list of Layer
    """
    walker = _Walker()
    walker.walk(model.graph)
    return walker.layers
