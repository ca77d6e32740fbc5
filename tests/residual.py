"""A small residual token classifier built with onnx.helper, and its function-preserving
permutations, for the residual-stream tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

D, F, VOCAB, CLASSES, LENGTH = 12, 20, 30, 4, 8


def residual_model(seed: int = 0, blocks: int = 2, stream: np.ndarray | None = None,
                   hidden: list | None = None, noise: float = 0.0,
                   tail: str = "head", take: list | None = None, width: int = D,
                   hidden_units: int = F, vocab: int = VOCAB) -> onnx.ModelProto:
    """Embedding, ``blocks`` pre-LN feed-forward blocks ``x + W2 relu(W1 LN(x) + b1) + b2``, a final
    LayerNorm, the mean over positions and a dense head.

    ``stream`` (D,) and ``hidden`` (one (F,) per block) permute the stream's units and each
    block's inner units: the function stays the same. ``noise`` perturbs every weight (a
    derived model). ``tail``: ``head`` (as above), ``output`` (the stream is also a graph
    output) or ``bias`` (a constant per unit added to the stream before the head). ``take``
    keeps only those blocks, in that order (a shallower model distilled from a subset of the
    teacher's layers, with its embedding table). ``width``, ``hidden_units``, ``vocab``: the
    stream's units, each block's inner units and the table's rows.
    """
    D, F, VOCAB = width, hidden_units, vocab  # noqa: N806 (this model's sizes)
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        w = rng.normal(size=shape) * scale
        return (w + noise * np.random.default_rng(seed + 99).normal(size=shape) * scale).astype(np.float32)

    emb = normal(VOCAB, D)
    ws = [dict(g=1 + normal(D, scale=0.1), be=normal(D, scale=0.1),
               W1=normal(D, F, scale=D ** -0.5), b1=normal(F, scale=0.1),
               W2=normal(F, D, scale=F ** -0.5), b2=normal(D, scale=0.1)) for _ in range(blocks)]
    if take is not None:
        ws = [ws[k] for k in take]
        blocks = len(ws)
    gf, bf = 1 + normal(D, scale=0.1), normal(D, scale=0.1)
    wh, bh = normal(CLASSES, D), normal(CLASSES)
    if stream is not None:
        p = stream
        emb = emb[:, p]
        for w, q in zip(ws, hidden or [np.arange(F)] * blocks):
            w["g"], w["be"], w["b2"] = w["g"][p], w["be"][p], w["b2"][p]
            w["W1"], w["b1"] = w["W1"][p][:, q], w["b1"][q]
            w["W2"] = w["W2"][q][:, p]
        gf, bf, wh = gf[p], bf[p], wh[:, p]
    inits = {"E": emb, "gf": gf, "bf": bf, "Wh": wh, "bh": bh}
    nodes = [helper.make_node("Gather", ["E", "ids"], ["x0"], name="embed")]
    x = "x0"
    for i, w in enumerate(ws):
        inits.update({f"{k}_{i}": v for k, v in w.items()})
        nodes += [helper.make_node("LayerNormalization", [x, f"g_{i}", f"be_{i}"], [f"h_{i}"],
                                   axis=-1, name=f"ln_{i}")] + _feed_forward(x, i)
        x = f"x{i + 1}"
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", CLASSES])]
    if tail == "output":
        outputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", LENGTH, D]))
    if tail == "bias":
        inits["shift"] = np.linspace(-1, 1, D).astype(np.float32)
        nodes.append(helper.make_node("Add", [x, "shift"], ["shifted"], name="shift"))
        x = "shifted"
    nodes += [helper.make_node("LayerNormalization", [x, "gf", "bf"], ["hf"], axis=-1, name="ln_f"),
              helper.make_node("ReduceMean", ["hf"], ["pooled"], axes=[1], keepdims=0, name="pool"),
              helper.make_node("Gemm", ["pooled", "Wh", "bh"], ["logits"], transB=1, name="head")]
    graph = helper.make_graph(nodes, "residual",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", LENGTH])],
                              outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def permutations(seed: int = 1, blocks: int = 2) -> tuple[np.ndarray, list]:
    """A stream permutation (D,) and one hidden permutation (F,) per block."""
    rng = np.random.default_rng(seed)
    return rng.permutation(D), [rng.permutation(F) for _ in range(blocks)]


def token_data(rows: int = 300, seed: int = 2):
    from onnx_lineage.data import Dataset
    ids = np.random.default_rng(seed).integers(0, VOCAB, size=(rows, LENGTH))
    return Dataset({"ids": ids}, None, "tokens")


def rotation(seed: int = 3, width: int = D) -> np.ndarray:
    """A random orthogonal matrix of shape (width, width), float64 (QR of a Gaussian, signs
    fixed so that it is uniform over O(width))."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(width, width)))
    return q * np.sign(np.diag(r))


def rms_model(seed: int = 0, blocks: int = 2, norm: str = "rms",
              rotate: np.ndarray | None = None, stream: np.ndarray | None = None,
              hidden: list | None = None, noise: float = 0.0,
              gated: bool = False) -> onnx.ModelProto:
    """``residual_model``'s token classifier with an RMS norm instead of each LayerNorm:
    embedding, ``blocks`` pre-norm blocks ``x + W2 relu(W1 rms(x) + b1) + b2``, a final RMS
    norm, the mean over positions, a dense head; ``rms(x) = x / sqrt(mean(x^2) + eps)`` over
    the stream's D units.

    ``norm``: ``rms`` (RMSNormalization, opset 23, with a scale of ones: a gain folded into the
    next linears), ``ops`` (Pow, ReduceMean, Add, Sqrt, Div: no gain),
    ``gain`` (the same ops times a trained gain per unit: a rotation is no symmetry there).
    ``rotate`` (D, D) orthogonal ``R``: the stream ``x`` becomes ``R x``: the embedding's rows
    ``E R^T``, writers ``R W``, readers ``W R^T`` (the same function where the norm has no
    gain). ``stream`` (D,) and ``hidden`` (F,) per block permute units as in
    ``residual_model``; ``noise`` perturbs every weight before (a fine-tune). ``gated``: each
    feed-forward layer is SwiGLU, ``W2 (silu(W1 h + b1) * (W3 h))``, without the ReLU."""
    rng, jitter = np.random.default_rng(seed), np.random.default_rng(seed + 99)

    def normal(*shape, scale=1.0):
        w = rng.normal(size=shape) * scale
        return w + noise * jitter.normal(size=shape) * scale

    emb, wh, bh = normal(VOCAB, D), normal(CLASSES, D), normal(CLASSES)
    ws = [dict(W1=normal(D, F, scale=D ** -0.5), b1=normal(F, scale=0.1),
               W2=normal(F, D, scale=F ** -0.5), b2=normal(D, scale=0.1),
               g=1 + normal(D, scale=0.3)) for _ in range(blocks)]
    if gated:  # drawn after the others: the ungated model's weights stay as they were
        for w in ws:
            w["W3"] = normal(D, F, scale=D ** -0.5)
    gf = 1 + normal(D, scale=0.3)
    r = np.eye(D) if rotate is None else rotate
    p = np.arange(D) if stream is None else stream
    emb, wh, gf = (emb @ r.T)[:, p], (wh @ r.T)[:, p], gf[p]
    for w, q in zip(ws, hidden or [np.arange(F)] * blocks):
        w["W1"], w["b1"] = (r @ w["W1"])[p][:, q], w["b1"][q]
        w["W2"], w["b2"], w["g"] = (w["W2"] @ r.T)[q][:, p], (r @ w["b2"])[p], w["g"][p]
        if gated:
            w["W3"] = (r @ w["W3"])[p][:, q]
    inits = {"E": emb, "Wh": wh, "bh": bh, "two": np.array(2.0), "eps": np.array(1e-5),
             "ones": np.ones(D)}
    nodes = [helper.make_node("Gather", ["E", "ids"], ["x0"], name="embed")]
    x = "x0"
    for i, w in enumerate(ws):
        inits.update({f"{k}_{i}": v for k, v in w.items()})
        nodes += _rms(x, f"h_{i}", str(i), norm, f"g_{i}")
        nodes += _feed_forward(x, i, gated)
        x = f"x{i + 1}"
    inits["gf"] = gf
    nodes += _rms(x, "hf", "f", norm, "gf")
    nodes += [helper.make_node("ReduceMean", ["hf", "positions"], ["pooled"], keepdims=0,
                               name="pool"),
              helper.make_node("Gemm", ["pooled", "Wh", "bh"], ["logits"], transB=1, name="head")]
    axes = {"positions": np.array([1]), "last": np.array([-1])}
    graph = helper.make_graph(
        nodes, "rms", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", LENGTH])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", CLASSES])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()
         if any(k in n.input for n in nodes)]
        + [numpy_helper.from_array(v, k) for k, v in axes.items()])
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 23)])


def _rms(x: str, out: str, tag: str, norm: str, gain: str) -> list:
    """The nodes of ``out = rms(x)`` (see :func:`rms_model`)."""
    if norm in ("rms", "simplified"):  # simplified: onnxruntime's op, in the default domain
        op = "RMSNormalization" if norm == "rms" else "SimplifiedLayerNormalization"
        return [helper.make_node(op, [x, "ones"], [out], axis=-1, epsilon=1e-5,
                                 name=f"rms_{tag}")]
    s = f"_{tag}"
    nodes = [helper.make_node("Pow", [x, "two"], ["sq" + s], name="pow" + s),
             helper.make_node("ReduceMean", ["sq" + s, "last"], ["ms" + s], keepdims=1,
                              name="ms" + s),
             helper.make_node("Add", ["ms" + s, "eps"], ["mse" + s], name="mse" + s),
             helper.make_node("Sqrt", ["mse" + s], ["rms" + s], name="rms" + s)]
    if norm == "ops":
        return nodes + [helper.make_node("Div", [x, "rms" + s], [out], name="div" + s)]
    if norm != "gain":
        raise ValueError(f"unknown norm {norm!r}: rms, ops or gain")
    return nodes + [helper.make_node("Div", [x, "rms" + s], ["n" + s], name="div" + s),
                    helper.make_node("Mul", ["n" + s, gain], [out], name="gain" + s)]


def _feed_forward(x: str, i: int, gated: bool = False) -> list:
    """Block ``i``'s feed-forward layer on its normalised ``h_i`` and the residual add onto
    ``x``: ``x_{i+1} = x + W2 relu(W1 h_i + b1) + b2`` (gated: ``silu(W1 h_i + b1) * W3 h_i``
    in place of the ReLU)."""
    if gated:
        act = [helper.make_node("Sigmoid", [f"a1_{i}"], [f"s_{i}"], name=f"sigmoid_{i}"),
               helper.make_node("Mul", [f"a1_{i}", f"s_{i}"], [f"silu_{i}"], name=f"silu_{i}"),
               helper.make_node("MatMul", [f"h_{i}", f"W3_{i}"], [f"m3_{i}"], name=f"ff3_{i}"),
               helper.make_node("Mul", [f"silu_{i}", f"m3_{i}"], [f"r_{i}"], name=f"glu_{i}")]
    else:
        act = [helper.make_node("Relu", [f"a1_{i}"], [f"r_{i}"], name=f"relu_{i}")]
    return [helper.make_node("MatMul", [f"h_{i}", f"W1_{i}"], [f"m1_{i}"], name=f"ff1_{i}"),
            helper.make_node("Add", [f"m1_{i}", f"b1_{i}"], [f"a1_{i}"], name=f"ff1b_{i}"),
            *act,
            helper.make_node("MatMul", [f"r_{i}", f"W2_{i}"], [f"m2_{i}"], name=f"ff2_{i}"),
            helper.make_node("Add", [f"m2_{i}", f"b2_{i}"], [f"y_{i}"], name=f"ff2b_{i}"),
            helper.make_node("Add", [x, f"y_{i}"], [f"x{i + 1}"], name=f"residual_{i}")]
