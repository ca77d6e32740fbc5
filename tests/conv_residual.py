"""A residual CNN built with onnx.helper: a 16-channel stream through plain residual blocks, a
squeeze-excite gate and a MobileNet-style inverted block (expand, depthwise, SE, project), and its
function-preserving permutations, for the convolutional-stream tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

C, H, E, R, CLASSES = 16, 12, 24, 4, 10


def _blocks(rng, noise_rng, noise):
    def w(*shape):
        fan_in = int(np.prod(shape[1:])) or 1
        x = rng.normal(size=shape) * fan_in ** -0.5
        return (x + noise * noise_rng.normal(size=shape) * fan_in ** -0.5).astype(np.float32)

    def bn(n):
        return {"s": (1 + 0.1 * w(n, 1).ravel()), "b": 0.1 * w(n, 1).ravel(),
                "m": 0.1 * w(n, 1).ravel(), "v": (1 + np.abs(w(n, 1).ravel())).astype(np.float32)}

    p = {"stem": w(C, 1, 3, 3), "stem_b": w(C, 1).ravel(), "stem_bn": bn(C)}
    for i in range(2):
        p[f"c1_{i}"], p[f"bn1_{i}"] = w(H, C, 3, 3), bn(H)
        p[f"c2_{i}"], p[f"bn2_{i}"] = w(C, H, 3, 3), bn(C)
    p["se1"], p["se1_b"], p["se2"], p["se2_b"] = w(R, C, 1, 1), w(R, 1).ravel(), w(C, R, 1, 1), w(C, 1).ravel()
    p["ex"], p["ex_bn"] = w(E, C, 1, 1), bn(E)
    p["dw"], p["dw_bn"] = w(E, 1, 3, 3), bn(E)
    p["mse1"], p["mse1_b"], p["mse2"], p["mse2_b"] = (w(R, E, 1, 1), w(R, 1).ravel(), w(E, R, 1, 1),
                                                      w(E, 1).ravel())
    p["pr"], p["pr_bn"] = w(C, E, 1, 1), bn(C)
    p["head"], p["head_b"] = w(CLASSES, C), w(CLASSES, 1).ravel()
    return p


def _permute(p: dict, stream: np.ndarray, hidden: list, expand: np.ndarray) -> dict:
    """Every unit axis permuted: the stream by ``stream``, block i's inner channels by
    ``hidden[i]``, the inverted block's expanded channels by ``expand``."""
    s, e = stream, expand
    q = dict(p)
    bn = lambda d, k: {n: v[k] for n, v in d.items()}
    q["stem"], q["stem_b"], q["stem_bn"] = p["stem"][s], p["stem_b"][s], bn(p["stem_bn"], s)
    for i, h in enumerate(hidden):
        q[f"c1_{i}"], q[f"bn1_{i}"] = p[f"c1_{i}"][h][:, s], bn(p[f"bn1_{i}"], h)
        q[f"c2_{i}"], q[f"bn2_{i}"] = p[f"c2_{i}"][s][:, h], bn(p[f"bn2_{i}"], s)
    q["se1"], q["se2"], q["se2_b"] = p["se1"][:, s], p["se2"][s], p["se2_b"][s]
    q["ex"], q["ex_bn"] = p["ex"][e][:, s], bn(p["ex_bn"], e)
    q["dw"], q["dw_bn"] = p["dw"][e], bn(p["dw_bn"], e)
    q["mse1"], q["mse2"], q["mse2_b"] = p["mse1"][:, e], p["mse2"][e], p["mse2_b"][e]
    q["pr"], q["pr_bn"] = p["pr"][s][:, e], bn(p["pr_bn"], s)
    q["head"] = p["head"][:, s]
    return q


def conv_residual_model(seed: int = 0, permuted: bool = False, noise: float = 0.0,
                        perm_seed: int = 1, torch_like: bool = False) -> onnx.ModelProto:
    """Stem conv+BN, two residual blocks (conv-BN-ReLU-conv-BN, added to the stream, ReLU), a
    squeeze-excite gate on the stream, an inverted block (1x1 expand, depthwise 3x3, SE on the
    expanded channels, 1x1 project, added to the stream), global pooling and a dense head.

    ``permuted`` applies random permutations (from ``perm_seed``) to every unit axis, the stream's
    included: the same function. ``noise`` perturbs every weight (a derived model).
    ``torch_like``: as PyTorch exports ``nn.Unflatten`` and ``x.mean((2, 3))``: flat pixels
    reshaped by a shape computed in the graph (shape inference loses the rank) and the pooling a
    ReduceMean with its axes as an input."""
    p = _blocks(np.random.default_rng(seed), np.random.default_rng(seed + 99), noise)
    if permuted:
        r = np.random.default_rng(perm_seed)
        p = _permute(p, r.permutation(C), [r.permutation(H), r.permutation(H)], r.permutation(E))
    inits, nodes = [], []

    def init(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def init_i(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
        return name

    def conv(x, name, bias=None, group=1, pad=1):
        ins = [x, init(name, p[name])] + ([init(name + "_b", p[bias])] if bias else [])
        k = p[name].shape[-1]
        nodes.append(helper.make_node("Conv", ins, [name + "_y"], name=name, group=group,
                                      pads=[pad if k > 1 else 0] * 4))
        return name + "_y"

    def bn(x, name):
        d = p[name]
        ins = [x] + [init(f"{name}_{k}", d[k]) for k in ("s", "b", "m", "v")]
        nodes.append(helper.make_node("BatchNormalization", ins, [name + "_y"], name=name))
        return name + "_y"

    def op(kind, ins, name, **kw):
        nodes.append(helper.make_node(kind, ins, [name], name=name, **kw))
        return name

    def se(x, a, b, tag):
        g = op("GlobalAveragePool", [x], f"{tag}_pool")
        g = op("Relu", [conv(g, a, a + "_b")], f"{tag}_relu")
        g = op("Sigmoid", [conv(g, b, b + "_b")], f"{tag}_gate")
        return op("Mul", [x, g], f"{tag}_scaled")

    x = "x"
    if torch_like:
        shape = op("Shape", ["x"], "shape")
        n = op("Slice", [shape, init_i("zero", [0]), init_i("one", [1])], "n")
        # [1, 8, 8] sliced from a start computed in the graph (64 - 64): a length unknown to
        # shape inference, as in PyTorch's export of nn.Unflatten
        start = op("Sub", [op("Slice", [shape, init_i("one_", [1]), init_i("two", [2])], "d"),
                           init_i("sixty_four", [64])], "start")
        chw = op("Slice", [init_i("chw", [1, 8, 8]), start, init_i("three", [3])], "chw_")
        x = op("Reshape", ["x", op("Concat", [n, chw], "target", axis=0)], "image")
    s = op("Relu", [bn(conv(x, "stem", "stem_b"), "stem_bn")], "s0")
    for i in range(2):
        h = op("Relu", [bn(conv(s, f"c1_{i}"), f"bn1_{i}")], f"h{i}")
        y = bn(conv(h, f"c2_{i}"), f"bn2_{i}")
        s = op("Relu", [op("Add", [s, y], f"res{i}")], f"s{i + 1}")
    s = se(s, "se1", "se2", "se")
    h = op("Relu", [bn(conv(s, "ex"), "ex_bn")], "ex_relu")
    h = op("Relu", [bn(conv(h, "dw", group=E), "dw_bn")], "dw_relu")
    h = se(h, "mse1", "mse2", "mse")
    s = op("Add", [s, bn(conv(h, "pr"), "pr_bn")], "s_out")
    if torch_like:
        f = op("ReduceMean", [s, init_i("axes", [2, 3])], "flat", keepdims=0)
    else:
        f = op("Flatten", [op("GlobalAveragePool", [s], "pool")], "flat")
    op("Gemm", [f, init("head", p["head"]), init("head_b", p["head_b"])], "logits", transB=1)
    graph = helper.make_graph(nodes, "conv_residual", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                      ["n", 64] if torch_like else ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def projection_model(seed: int = 0, permuted: bool = False) -> onnx.ModelProto:
    """Two streams joined by a projection shortcut, ResNet's downsampling block: a stem conv
    (1->8), a residual block on the 8-channel stream, then ``relu(proj(s) + c_b(relu(c_a(s))))``
    with ``proj`` a strided 1x1 conv (8->12) and ``c_a``, ``c_b`` strided 3x3 convs, global
    pooling and a dense head. ``permuted``: both streams and the inner channels permuted."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    p = {"stem": w(8, 1, 3, 3), "r1": w(6, 8, 3, 3), "r2": w(8, 6, 3, 3), "proj": w(12, 8, 1, 1),
         "ca": w(10, 8, 3, 3), "cb": w(12, 10, 3, 3), "head": w(10, 12)}
    p.update({k + "_b": w(v.shape[0], 1).ravel() for k, v in list(p.items())})
    if permuted:
        r = np.random.default_rng(5)
        s1, h, s2, i = r.permutation(8), r.permutation(6), r.permutation(12), r.permutation(10)
        for name, rows, cols in (("stem", s1, None), ("r1", h, s1), ("r2", s1, h),
                                 ("proj", s2, s1), ("ca", i, s1), ("cb", s2, i), ("head", None, s2)):
            if rows is not None:
                p[name], p[name + "_b"] = p[name][rows], p[name + "_b"][rows]
            if cols is not None:
                p[name] = p[name][:, cols]
    nodes = []

    def conv(x, name, stride=1):
        k = p[name].shape[-1]
        nodes.append(helper.make_node("Conv", [x, name, name + "_b"], [name + "_y"], name=name,
                                      pads=[k // 2] * 4, strides=[stride, stride]))
        return name + "_y"

    def op(kind, ins, name, **kw):
        nodes.append(helper.make_node(kind, ins, [name], name=name, **kw))
        return name

    s = op("Relu", [conv("x", "stem")], "s0")
    s = op("Relu", [op("Add", [s, conv(op("Relu", [conv(s, "r1")], "h"), "r2")], "res1")], "s1")
    y = conv(op("Relu", [conv(s, "ca", 2)], "i"), "cb")
    s = op("Relu", [op("Add", [conv(s, "proj", 2), y], "res2")], "s2")
    f = op("Flatten", [op("GlobalAveragePool", [s], "pool")], "flat")
    op("Gemm", [f, "head", "head_b"], "logits", transB=1)
    graph = helper.make_graph(
        nodes, "projection", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(v, k) for k, v in p.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
