"""A Llama-like decoder written as an ONNX graph, weights in float16 external data.

Used by ``big_models.py --decoder``. The graph is built with ``onnx.helper`` rather than exported
(an exporter holds the model twice over; at 1.1B parameters that is most of a 24 GiB machine):
token embeddings, ``layers`` pre-norm blocks of RMSNorm, grouped-query attention (``heads`` query
heads sharing ``kv_heads`` key/value heads, a causal mask, no rotary embedding) and a SwiGLU
feed-forward layer, a final RMSNorm and the vocabulary head read at the last position: the logits
of the next token, ``(batch, vocab)``. Every weight is stored as float16 in one ``.onnx.data`` file
beside the model and cast to float32 in the graph (how half-precision checkpoints are often
shipped for CPU runtimes). The default config is TinyLlama's shape: 22 blocks, width 2048, 32
heads, 4 key/value heads, 5632 feed-forward units, 32,000 tokens: 1.1B parameters, 2.2 GB.

Weights are random (``seed``) at the scale of a trained model's; ``noise`` adds that fraction of
each tensor's standard deviation from a second generator (a derived model: A plus small noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


@dataclass(frozen=True)
class Config:
    vocab: int = 32000
    width: int = 2048
    layers: int = 22
    heads: int = 32
    kv_heads: int = 4
    ff: int = 5632

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def parameters(self) -> int:
        d, kv = self.width, self.kv_heads * self.head_dim
        block = 2 * d * d + 2 * d * kv + 3 * d * self.ff + 2 * d
        return 2 * self.vocab * d + self.layers * block + d


class _Writer:
    """Weights appended to one external data file as float16, with their TensorProtos."""

    def __init__(self, data: Path, seed: int, noise: float, noise_seed: int):
        self.file = data.open("wb")
        self.location = data.name
        self.rng = np.random.default_rng(seed)
        self.jitter = np.random.default_rng(noise_seed)
        self.noise = noise
        self.tensors: list[TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []

    def weight(self, name: str, shape: tuple, std: float | None = None, ones: bool = False) -> str:
        """Append a float16 weight; returns the name of its float32 cast."""
        if ones:
            w = np.ones(shape, np.float32)
        else:
            std = std if std is not None else 1.0 / np.sqrt(shape[0])
            w = self.rng.normal(0.0, std, size=shape).astype(np.float32)
        if self.noise:
            w += (self.noise * (std or 0.02) * self.jitter.standard_normal(shape)).astype(np.float32)
        raw = w.astype(np.float16).tobytes()
        offset = self.file.tell()
        self.file.write(raw)
        t = TensorProto(name=name, data_type=TensorProto.FLOAT16, dims=list(shape))
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.location), ("offset", str(offset)),
                     ("length", str(len(raw)))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
        self.tensors.append(t)
        self.nodes.append(helper.make_node("Cast", [name], [f"{name}_f"], to=TensorProto.FLOAT))
        return f"{name}_f"


def build(path: Path, cfg: Config = Config(), seed: int = 0, noise: float = 0.0,
          noise_seed: int = 1) -> Path:
    """Write the decoder to ``path`` (and ``path.data``)."""
    w = _Writer(path.with_name(path.name + ".data"), seed, noise, noise_seed)
    nodes = w.nodes
    consts = []

    def const(name, value):
        consts.append(onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, ins, out, **kw):
        nodes.append(helper.make_node(op, ins, [out], **kw))
        return out

    d, hd = cfg.width, cfg.head_dim
    kv = cfg.kv_heads * hd
    const("eps", np.float32(1e-5))
    const("two", np.float32(2.0))
    const("axes_last", np.array([-1], np.int64))
    const("scale", np.float32(1.0 / np.sqrt(hd)))
    const("q_shape", np.array([0, 0, cfg.heads, hd], np.int64))
    const("kv_shape", np.array([0, 0, cfg.kv_heads, 1, hd], np.int64))
    const("kv_expand", np.array([1, 1, cfg.kv_heads, cfg.heads // cfg.kv_heads, hd], np.int64))
    const("merge", np.array([0, 0, d], np.int64))
    const("last", np.array([-1], np.int64))
    const("one", np.array([1], np.int64))
    const("neg", np.float32(-1e4))

    def rms(x, name):
        g = w.weight(f"{name}.weight", (d,), ones=True)
        sq = node("Pow", [x, "two"], f"{name}_sq")
        mean = node("ReduceMean", [sq, "axes_last"], f"{name}_mean", keepdims=1)
        root = node("Sqrt", [node("Add", [mean, "eps"], f"{name}_var")], f"{name}_root")
        return node("Mul", [node("Div", [x, root], f"{name}_n"), g], f"{name}_out")

    def linear(x, name, n_in, n_out):
        return node("MatMul", [x, w.weight(f"{name}.weight", (n_in, n_out))], f"{name}_out")

    emb = w.weight("embed.weight", (cfg.vocab, d), std=0.02)
    h = node("Gather", [emb, "input_ids"], "h0")
    # causal mask (seq, seq): 0 on and below the diagonal, -1e4 above
    shape = node("Shape", ["input_ids"], "ids_shape")
    seq = node("Gather", [shape, "one"], "seq", axis=0)
    pos = node("Range", [const("zero_s", np.int64(0)),
                         node("Squeeze", [seq], "seq_s"), const("step", np.int64(1))], "pos")
    rows = node("Unsqueeze", [pos, "axes_last"], "pos_rows")
    above = node("Greater", [pos, rows], "above")
    mask = node("Where", [above, "neg", const("zero_f", np.float32(0.0))], "mask")
    for i in range(cfg.layers):
        p = f"blocks.{i}"
        x = rms(h, f"{p}.attn_norm")
        q = node("Transpose", [node("Reshape", [linear(x, f"{p}.q", d, d), "q_shape"], f"{p}_q4")],
                 f"{p}_qt", perm=[0, 2, 1, 3])
        heads = []
        for name in ("k", "v"):
            t = node("Reshape", [linear(x, f"{p}.{name}", d, kv), "kv_shape"], f"{p}_{name}5")
            t = node("Expand", [t, "kv_expand"], f"{p}_{name}e")
            heads.append(node("Transpose", [node("Reshape", [t, "q_shape"], f"{p}_{name}4")],
                              f"{p}_{name}t", perm=[0, 2, 1, 3]))
        k, v = heads
        kt = node("Transpose", [k], f"{p}_kT", perm=[0, 1, 3, 2])
        att = node("Mul", [node("MatMul", [q, kt], f"{p}_qk"), "scale"], f"{p}_qks")
        att = node("Softmax", [node("Add", [att, mask], f"{p}_masked")], f"{p}_att", axis=-1)
        ctx = node("Transpose", [node("MatMul", [att, v], f"{p}_ctx")], f"{p}_ctxt",
                   perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, "merge"], f"{p}_ctx3")
        h = node("Add", [h, linear(ctx, f"{p}.o", d, d)], f"{p}_h1")
        x = rms(h, f"{p}.ff_norm")
        gate = linear(x, f"{p}.gate", d, cfg.ff)
        silu = node("Mul", [gate, node("Sigmoid", [gate], f"{p}_sig")], f"{p}_silu")
        up = node("Mul", [silu, linear(x, f"{p}.up", d, cfg.ff)], f"{p}_swiglu")
        h = node("Add", [h, linear(up, f"{p}.down", cfg.ff, d)], f"{p}_h2")
    h = rms(h, "final_norm")
    last = node("Squeeze", [node("Gather", [h, "last"], "h_last3", axis=1), "one"], "h_last")
    node("MatMul", [last, w.weight("lm_head.weight", (d, cfg.vocab), std=0.02)], "logits")
    w.file.close()
    graph = helper.make_graph(
        nodes, "decoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", cfg.vocab])],
        w.tensors + consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path
