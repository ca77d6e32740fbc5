"""Small MLPs built in code for the evidence tests, with their function-preserving permutations."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.demo.family import mlp_to_onnx

SIZES = (20, 16, 12, 3)


def random_mlp(seed: int, sizes=SIZES) -> tuple[list, list]:
    """Weights (out, in) and biases of an MLP drawn i.i.d. (an independent initialisation)."""
    rng = np.random.default_rng(seed)
    ws = [(rng.normal(size=(o, i)) / np.sqrt(i)).astype(np.float32)
          for i, o in zip(sizes, sizes[1:])]
    bs = [(0.1 * rng.normal(size=o)).astype(np.float32) for o in sizes[1:]]
    return ws, bs


def permuted(ws, bs, layer: int, perm: np.ndarray, scale: np.ndarray | None = None):
    """Hidden units of ``layer`` put in order ``perm`` (unit u <- unit perm[u]) and rescaled by
    ``scale``: the same function (ReLU)."""
    ws, bs = [w.copy() for w in ws], [b.copy() for b in bs]
    s = np.ones(perm.size, np.float32) if scale is None else scale.astype(np.float32)
    ws[layer] = ws[layer][perm] * s[:, None]
    bs[layer] = bs[layer][perm] * s
    ws[layer + 1] = ws[layer + 1][:, perm] / s[None, :]
    return ws, bs


def save(ws, bs, path) -> str:
    onnx.save(mlp_to_onnx(ws, bs), path)
    return str(path)


def _draws(seed: int, noise: float):
    """``w(*shape)``: weights drawn for a fixture (scaled by fan-in), perturbed by ``noise``
    times their spread (a derived model) with draws of their own."""
    rng = np.random.default_rng(seed)
    jitter = np.random.default_rng(seed + 1000)

    def w(*shape):
        base = rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))
        return (base + noise * base.std() * jitter.normal(size=shape)).astype(np.float32)
    return w


def _graph_model(nodes: list, name: str, tensors: dict, x_shape: list, y_shape: list,
                 opset: int = 17) -> onnx.ModelProto:
    """A one-input, one-output model ``x -> logits`` of ``nodes`` and initializers ``tensors``."""
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(v, k) for k, v in tensors.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10 if opset >= 21 else 8
    return model


def mobile_block(seed: int, perm: np.ndarray | None = None, noise: float = 0.0,
                 pool: str = "GlobalAveragePool") -> onnx.ModelProto:
    """``Conv(1->8) Relu, depthwise Conv(8, groups 8) Relu, Conv 1x1 (8->12) Relu,
    GlobalAveragePool, Flatten, Gemm(12->4)`` on (N, 1, 8, 8) inputs.

    ``perm`` (8,) puts the first conv's channels in that order, with the depthwise filters and
    the 1x1 conv's inputs: the same function. ``noise`` perturbs every weight (a derived model).
    ``pool="ReduceMean"`` pools as PyTorch exports ``x.mean((2, 3))``.
    """
    w = _draws(seed, noise)

    p = np.arange(8) if perm is None else perm
    tensors = {"c0.w": w(8, 1, 3, 3)[p], "c0.b": w(8)[p], "dw.w": w(8, 1, 3, 3)[p],
               "dw.b": w(8)[p], "pw.w": w(12, 8, 1, 1)[:, p], "pw.b": w(12),
               "fc.w": w(4, 12), "fc.b": w(4)}
    nodes = [
        helper.make_node("Conv", ["x", "c0.w", "c0.b"], ["c0"], pads=[1, 1, 1, 1], name="c0"),
        helper.make_node("Relu", ["c0"], ["r0"], name="r0"),
        helper.make_node("Conv", ["r0", "dw.w", "dw.b"], ["dw"], pads=[1, 1, 1, 1], group=8,
                         name="dw"),
        helper.make_node("Relu", ["dw"], ["r1"], name="r1"),
        helper.make_node("Conv", ["r1", "pw.w", "pw.b"], ["pw"], name="pw"),
        helper.make_node("Relu", ["pw"], ["r2"], name="r2"),
        (helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap") if pool != "ReduceMean"
         else helper.make_node("ReduceMean", ["r2"], ["gap"], axes=[2, 3], keepdims=1,
                               name="gap")),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1, name="fc")]
    return _graph_model(nodes, "mobile", tensors, ["batch", 1, 8, 8], ["batch", 4], 17)


def _computed_scale(n) -> list:
    """``s1 = (qt * f) @ (kt * f)`` with ``f = 1 / sqrt(sqrt(head_dim))`` read off qt's shape."""
    return [n("Shape", ["qt"], ["qt_shape"], start=-1), n("Cast", ["qt_shape"], ["dh_f"], to=1),
            n("Sqrt", ["dh_f"], ["dh_r"]), n("Reciprocal", ["dh_r"], ["dh_i"]),
            n("Sqrt", ["dh_i"], ["f"]), n("Mul", ["qt", "f"], ["qs"]), n("Mul", ["kt", "f"], ["ks"]),
            n("MatMul", ["qs", "ks"], ["s1"])]


def attention_model(seed: int, heads: int = 4, d: int = 16, qk: np.ndarray | None = None,
                    vo: np.ndarray | None = None, rotary: bool = False,
                    shape: str = "constant", scale: str = "constant") -> onnx.ModelProto:
    """Token embeddings, one multi-head self-attention block with an output projection, a
    residual addition, LayerNorm, the mean over positions and a head (ids (N, 6) of 20 tokens).

    ``qk`` and ``vo`` (d,) reorder dimensions within each head (they must map every head's span
    onto itself): q's and k's rows together, v's rows with o's input columns: the same function.
    ``rotary`` multiplies q by a fixed factor per dimension (as a rotary embedding does), which
    breaks that symmetry. ``shape``: the head split's target shape as a ``constant`` or as a
    ``concat`` of shapes computed at run time and the constant head count. ``scale``: the
    scores divided by a ``constant``, or q and k each multiplied by ``head_dim ** -0.25``
    ``computed`` at run time from q's shape (as Hugging Face's exports write it).
    """
    rng = np.random.default_rng(seed)
    dh = d // heads

    def w(*s):
        return (rng.normal(size=s) / np.sqrt(s[0])).astype(np.float32)

    t = {"emb": w(20, d), "Wq": w(d, d), "bq": w(d), "Wk": w(d, d), "bk": w(d), "Wv": w(d, d),
         "bv": w(d), "Wo": w(d, d), "bo": w(d), "g": 1 + w(d), "b": w(d), "Wh": w(d, 3),
         "bh": w(3), "scale": np.array(np.sqrt(dh), np.float32),
         "rot": (1 + np.arange(d) / d).astype(np.float32),
         "split": np.array([0, 0, heads, dh], np.int64), "merge": np.array([0, 0, d], np.int64),
         "heads": np.array([heads], np.int64), "axis": np.array([1], np.int64)}
    if qk is not None:
        for name in ("Wq", "Wk"):
            t[name] = t[name][:, qk]
        t["bq"], t["bk"] = t["bq"][qk], t["bk"][qk]
    if vo is not None:
        t["Wv"], t["bv"], t["Wo"] = t["Wv"][:, vo], t["bv"][vo], t["Wo"][vo]
    n = helper.make_node
    nodes = [n("Gather", ["emb", "ids"], ["x"])]
    for p in ("q", "k", "v"):
        nodes += [n("MatMul", ["x", f"W{p}"], [f"{p}0"]), n("Add", [f"{p}0", f"b{p}"], [f"{p}1"])]
    if rotary:
        nodes.append(n("Mul", ["q1", "rot"], ["q1r"]))
    split = "split"
    if shape == "concat":  # (batch, positions) from the input's shape, then heads and head size
        t["split"], t["hd"], split = None, np.array([dh], np.int64), "split_c"
        nodes += [n("Shape", ["ids"], ["ids_shape"]),
                  n("Concat", ["ids_shape", "heads", "hd"], [split], axis=0)]
    q_in = "q1r" if rotary else "q1"
    heads_first, keys_last = [0, 2, 1, 3], [0, 2, 3, 1]
    nodes += [n("Reshape", [q_in, split], ["qh"]), n("Transpose", ["qh"], ["qt"], perm=heads_first),
              n("Reshape", ["k1", split], ["kh"]), n("Transpose", ["kh"], ["kt"], perm=keys_last),
              n("Reshape", ["v1", split], ["vh"]), n("Transpose", ["vh"], ["vt"], perm=heads_first),
              *([n("MatMul", ["qt", "kt"], ["s0"]), n("Div", ["s0", "scale"], ["s1"])]
                if scale == "constant" else _computed_scale(n)),
              n("Softmax", ["s1"], ["a"], axis=-1), n("MatMul", ["a", "vt"], ["c0"]),
              n("Transpose", ["c0"], ["c1"], perm=heads_first),
              n("Reshape", ["c1", "merge"], ["c2"]),
              n("MatMul", ["c2", "Wo"], ["o0"]), n("Add", ["o0", "bo"], ["o1"]),
              n("Add", ["x", "o1"], ["r"]),
              n("LayerNormalization", ["r", "g", "b"], ["ln"], axis=-1),
              n("ReduceMean", ["ln"], ["pooled"], axes=[1], keepdims=0),
              n("MatMul", ["pooled", "Wh"], ["h0"]), n("Add", ["h0", "bh"], ["logits"])]
    inits = [numpy_helper.from_array(v, k) for k, v in t.items() if v is not None]
    info = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "attention", [info("ids", TensorProto.INT64, ["n", 6])],
                              [info("logits", TensorProto.FLOAT, ["n", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def within_heads(rng: np.random.Generator, heads: int, dh: int) -> np.ndarray:
    """A random permutation of ``heads * dh`` dimensions that keeps every head's span."""
    return np.concatenate([h * dh + rng.permutation(dh) for h in range(heads)])


def width_pruned(ws, bs, drop: int, noise: float = 0.0, seed: int = 0):
    """Every hidden layer's ``drop`` weakest units (smallest incoming-weight norm) removed, with
    the columns of the next layer that read them, in the order the rest had; then ``noise``
    (relative) on every weight, as a short fine-tune would leave it."""
    ws, bs = [w.copy() for w in ws], [b.copy() for b in bs]
    for k in range(len(ws) - 1):
        keep = np.sort(np.argsort(np.linalg.norm(ws[k], axis=1))[drop:])
        ws[k], bs[k] = ws[k][keep], bs[k][keep]
        ws[k + 1] = ws[k + 1][:, keep]
    rng = np.random.default_rng(seed)
    ws = [(w + noise * w.std() * rng.normal(size=w.shape)).astype(np.float32) for w in ws]
    return ws, bs


def concat_block(seed: int, perms: tuple | None = None, noise: float = 0.0,
                 stream: bool = False) -> onnx.ModelProto:
    """Two convolutions side by side, concatenated on the channels and read by a third, as
    Inception, U-Net skips and Basic Pitch write them: ``a = Relu(Conv(1->4) x)``, ``b =
    Relu(Conv(1->3) x)``, ``Conv(7->5)(Concat(a, b))``, ``GlobalAveragePool``, ``Flatten``,
    ``Gemm(5->2)``, on (N, 1, 6, 6) inputs.

    ``perms`` (a (4,) and a (3,) permutation) reorders ``a``'s and ``b``'s channels with the
    third convolution's input blocks: the same function. ``noise`` perturbs every weight.
    ``stream``: ``a`` is a residual stream instead (``a = c0 + Conv(4->4)(Relu(c0))``, the
    block ``a`` of the Concat its reader).
    """
    w = _draws(seed, noise)

    pa, pb = perms if perms is not None else (np.arange(4), np.arange(3))
    tensors = {"a.w": w(4, 1, 3, 3)[pa], "a.b": w(4)[pa], "b.w": w(3, 1, 3, 3)[pb],
               "b.b": w(3)[pb], "c.w": w(5, 7, 1, 1)[:, np.concatenate([pa, 4 + pb])],
               "c.b": w(5), "fc.w": w(2, 5), "fc.b": w(2)}
    n = helper.make_node
    nodes = [n("Conv", ["x", "a.w", "a.b"], ["a0"], pads=[1, 1, 1, 1], name="a"),
             n("Conv", ["x", "b.w", "b.b"], ["b0"], pads=[1, 1, 1, 1], name="b"),
             n("Relu", ["b0"], ["rb"], name="rb")]
    if stream:
        tensors["s.w"], tensors["s.b"] = w(4, 4, 1, 1)[pa][:, pa], w(4)[pa]
        nodes += [n("Relu", ["a0"], ["ra0"], name="ra0"),
                  n("Conv", ["ra0", "s.w", "s.b"], ["s"], name="s"),
                  n("Add", ["a0", "s"], ["ra"], name="res")]
    else:
        nodes.append(n("Relu", ["a0"], ["ra"], name="ra"))
    nodes += [n("Concat", ["ra", "rb"], ["cat"], axis=1, name="cat"),
              n("Conv", ["cat", "c.w", "c.b"], ["c"], name="c"),
              n("Relu", ["c"], ["rc"], name="rc"),
              n("GlobalAveragePool", ["rc"], ["gap"], name="gap"),
              n("Flatten", ["gap"], ["flat"], name="flat"),
              n("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1, name="fc")]
    return _graph_model(nodes, "concat", tensors, ["batch", 1, 6, 6], ["batch", 2], 17)


def groupnorm_block(seed: int, perm: np.ndarray | None = None, opset: int = 21,
                    noise: float = 0.0) -> onnx.ModelProto:
    """``Conv(1->6)``, ``GroupNormalization`` (3 groups of 2 channels), ``Relu``, ``Conv(6->4)``,
    ``GlobalAveragePool``, ``Flatten``, ``Gemm(4->2)`` on (N, 1, 6, 6) inputs; the norm's scale
    and bias per channel (opset 21) or per group (opset 18).

    ``perm`` (6,) reorders the first conv's channels (with the norm's per-channel parameters
    and the second conv's inputs): the same function when it keeps each channel in its group.
    """
    w = _draws(seed, noise)

    p = np.arange(6) if perm is None else perm
    per = 6 if opset >= 21 else 3
    scale, shift = 1 + w(per), w(per)
    tensors = {"c0.w": w(6, 1, 3, 3)[p], "c0.b": w(6)[p],
               "gn.s": scale[p] if per == 6 else scale, "gn.b": shift[p] if per == 6 else shift,
               "c1.w": w(4, 6, 1, 1)[:, p], "c1.b": w(4), "fc.w": w(2, 4), "fc.b": w(2)}
    n = helper.make_node
    nodes = [n("Conv", ["x", "c0.w", "c0.b"], ["c0"], pads=[1, 1, 1, 1], name="c0"),
             n("GroupNormalization", ["c0", "gn.s", "gn.b"], ["gn"], num_groups=3, name="gn"),
             n("Relu", ["gn"], ["r"], name="r"),
             n("Conv", ["r", "c1.w", "c1.b"], ["c1"], name="c1"),
             n("GlobalAveragePool", ["c1"], ["gap"], name="gap"),
             n("Flatten", ["gap"], ["flat"], name="flat"),
             n("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1, name="fc")]
    return _graph_model(nodes, "groupnorm", tensors, ["batch", 1, 6, 6], ["batch", 2],
                        opset)


def glu_mlp(seed: int, perm: np.ndarray | None = None, noise: float = 0.0,
            split_sizes: bool = True) -> onnx.ModelProto:
    """A gated linear unit as fused exports write it: ``h = Gemm(8->12) x``, ``a, b =
    Split(h)`` on the last axis, ``a * Sigmoid(b)``, ``Gemm(6->3)``.

    ``perm`` (6,) reorders the hidden units in both halves of the first layer's rows and the
    second layer's columns: the same function. ``split_sizes=False`` leaves the Split's sizes
    out (equal halves by default).
    """
    w = _draws(seed, noise)

    p = np.arange(6) if perm is None else perm
    rows = np.concatenate([p, 6 + p])
    tensors = {"w1": w(12, 8)[rows], "b1": w(12)[rows], "w2": w(3, 6)[:, p], "b2": w(3)}
    n = helper.make_node
    split = ["h", "sizes"] if split_sizes else ["h"]
    if split_sizes:
        tensors["sizes"] = np.array([6, 6], np.int64)
    nodes = [n("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="fc1"),
             n("Split", split, ["a", "b"], axis=-1, name="split"),
             n("Sigmoid", ["b"], ["gate"], name="sig"),
             n("Mul", ["a", "gate"], ["glu"], name="glu"),
             n("Gemm", ["glu", "w2", "b2"], ["logits"], transB=1, name="fc2")]
    if not split_sizes:
        nodes[1] = n("Split", split, ["a", "b"], axis=-1, num_outputs=2, name="split")
    return _graph_model(nodes, "glu", tensors, ["batch", 8], ["batch", 3], 18)
