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


#: Llama-2-7B's shape (the issue "Seven billion parameters"): 6.7B parameters, 13.5 GB in float16.
LLAMA_7B = Config(vocab=32000, width=4096, layers=32, heads=32, kv_heads=32, ff=11008)


def file_bytes(cfg: Config, bits: int | None = None) -> int:
    """Bytes of the external data :func:`build` writes for ``cfg`` (float16, or the linear
    layers as ``bits``-bit blocks with a float32 scale and a packed zero point per block)."""
    if bits is None:
        return 2 * cfg.parameters()
    d, kv = cfg.width, cfg.kv_heads * cfg.head_dim
    shapes = [(d, d), (d, kv), (d, kv), (d, d), (d, cfg.ff), (d, cfg.ff), (cfg.ff, d)]

    def nbits(k: int, n: int) -> int:
        blocks = -(-k // BLOCK)
        return n * (blocks * BLOCK * bits // 8 + 4 * blocks + -(-blocks * bits // 8))
    linear = cfg.layers * sum(nbits(k, n) for k, n in shapes) + nbits(d, cfg.vocab)
    return linear + 2 * (cfg.vocab * d + (2 * cfg.layers + 1) * d)


class _Writer:
    """Weights appended to one external data file, with their TensorProtos: float16 (each cast to
    float32 in the graph), or with ``bits`` the linear layers' weights as MatMulNBits blocks
    (:func:`quantize_blocks`) of the same float16 values."""

    def __init__(self, data: Path, seed: int, noise: float, noise_seed: int,
                 bits: int | None = None):
        self.file = data.open("wb")
        self.location = data.name
        self.rng = np.random.default_rng(seed)
        self.jitter = np.random.default_rng(noise_seed)
        self.noise = noise
        self.bits = bits
        self.tensors: list[TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []

    def values(self, shape: tuple, std: float | None = None, ones: bool = False) -> np.ndarray:
        """The next weight's values, rounded to float16 (the generators advance alike whatever
        is stored)."""
        if ones:
            w = np.ones(shape, np.float32)
        else:
            std = std if std is not None else 1.0 / np.sqrt(shape[0])
            w = self.rng.normal(0.0, std, size=shape).astype(np.float32)
        if self.noise:
            w += (self.noise * (std or 0.02) * self.jitter.standard_normal(shape)).astype(np.float32)
        return w.astype(np.float16)

    def stored(self, name: str, array: np.ndarray, data_type: int) -> str:
        """Append ``array``'s bytes as external tensor ``name`` of ONNX type ``data_type``."""
        raw = np.ascontiguousarray(array).tobytes()
        offset = self.file.tell()
        self.file.write(raw)
        t = TensorProto(name=name, data_type=data_type, dims=list(array.shape))
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.location), ("offset", str(offset)),
                     ("length", str(len(raw)))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
        self.tensors.append(t)
        return name

    def weight(self, name: str, shape: tuple, std: float | None = None, ones: bool = False) -> str:
        """Append a float16 weight; returns the name of its float32 cast."""
        self.stored(name, self.values(shape, std, ones), TensorProto.FLOAT16)
        self.nodes.append(helper.make_node("Cast", [name], [f"{name}_f"], to=TensorProto.FLOAT))
        return f"{name}_f"

    def matmul(self, x: str, name: str, shape: tuple, out: str, std: float | None = None) -> str:
        """``x @ W``, ``W`` of ``shape`` (K, N): a float16 weight cast, or MatMulNBits blocks."""
        if self.bits is None:
            self.nodes.append(helper.make_node("MatMul", [x, self.weight(name, shape, std)], [out]))
            return out
        packed, scales, zeros = quantize_blocks(self.values(shape, std).astype(np.float32),
                                                self.bits)
        ins = [x, self.stored(f"{name}.q", packed, TensorProto.UINT8),
               self.stored(f"{name}.scales", scales, TensorProto.FLOAT),
               self.stored(f"{name}.zero_points", zeros, TensorProto.UINT8)]
        self.nodes.append(helper.make_node("MatMulNBits", ins, [out], domain="com.microsoft",
                                           K=shape[0], N=shape[1], bits=self.bits,
                                           block_size=BLOCK))
        return out


#: Values per MatMulNBits block (along K), as onnxruntime's quantizer writes by default.
BLOCK = 32


def quantize_blocks(w: np.ndarray, bits: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``w`` (K, N) as MatMulNBits stores it: per output column and block of :data:`BLOCK` values
    along K, the asymmetric ``bits``-bit grid from the block's range (0 included) with its
    zero point, byte for byte as onnxruntime's ``MatMulNBitsQuantizer`` writes it (asymmetric;
    a last byte's unused zero point holds the default, ``2^(bits - 1)``).

    Returns
    -------
    packed : ndarray of uint8, shape (N, blocks, BLOCK * bits // 8)
        Values lowest bits first.
    scales : ndarray of float32, shape (N * blocks,)
    zero_points : ndarray of uint8, shape (N * ceil(blocks * bits / 8),)
        Packed per column like ``packed``.
    """
    k, n = w.shape
    blocks, top, per = -(-k // BLOCK), (1 << bits) - 1, 8 // bits
    v = np.zeros((n, blocks * BLOCK), np.float32)
    v[:, :k] = w.T
    v = v.reshape(n, blocks, BLOCK)
    lo, hi = np.minimum(v.min(-1), 0.0), np.maximum(v.max(-1), 0.0)
    scale = np.where(hi > lo, (hi - lo) / top, 1.0).astype(np.float32)
    zero = np.clip(np.round(-lo / scale), 0, top).astype(np.uint8)
    q = np.clip(np.round(v / scale[..., None]) + zero[..., None], 0, top).astype(np.uint8)
    packed = np.zeros((n, blocks, BLOCK // per), np.uint8)
    for j in range(per):
        packed |= q[..., j::per] << np.uint8(j * bits)
    padded = np.full((n, -(-blocks // per) * per), 1 << (bits - 1), np.uint8)  # unused: default
    padded[:, :blocks] = zero
    zeros = np.zeros((n, padded.shape[1] // per), np.uint8)
    for j in range(per):
        zeros |= padded[:, j::per] << np.uint8(j * bits)
    return packed, scale.reshape(-1), zeros.reshape(-1)


def build(path: Path, cfg: Config = Config(), seed: int = 0, noise: float = 0.0,
          noise_seed: int = 1, bits: int | None = None) -> Path:
    """Write the decoder to ``path`` (and ``path.data``); with ``bits``, every linear layer
    (the head too) as MatMulNBits of that many bits, from the same values."""
    w = _Writer(path.with_name(path.name + ".data"), seed, noise, noise_seed, bits)
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
        return w.matmul(x, f"{name}.weight", (n_in, n_out), f"{name}_out")

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
    w.matmul(last, "lm_head.weight", (d, cfg.vocab), "logits", std=0.02)
    w.file.close()
    graph = helper.make_graph(
        nodes, "decoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", cfg.vocab])],
        w.tensors + consts)
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid("com.microsoft", 1)] if bits
                                               else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path
