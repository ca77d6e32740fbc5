"""How ``llm_family.py`` derives and disguises a decoder (:mod:`harness.llama`): weight surgery in
PyTorch, and two ONNX-level copies (float16 weights, onnxruntime's 4-bit quantizer).

Function-preserving (the same logits to rounding): :func:`permute_ffn`, :func:`permute_heads`,
:func:`fold_norms` and :func:`rotate_stream`. Not preserving: :func:`prune`, :func:`drop_block`,
:func:`upscale` and :func:`grow_vocab` (the last two are trained briefly afterwards by the
script), :func:`lora` (trained, then merged), and the merges, which are ``benchmarks/merges.py``'s
(mergekit's recipes over the state dict). Every function returns a new model and leaves its
argument as it was. Orientation: a torch ``Linear`` weight is ``(out, in)``, ``y = x W^T``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.llama import Config, Llama

#: The linears a LoRA adapter is put on, by their attribute path inside a block.
LORA_TARGETS = ("attn.q_proj", "attn.v_proj", "ffn.gate_proj", "ffn.up_proj", "ffn.down_proj")


def _clone(model: Llama, cfg: Config | None = None) -> Llama:
    """A deep copy of ``model`` in eval mode, rebuilt with ``cfg`` when given (the state dict
    loaded as it is: ``cfg`` must keep every shape)."""
    if cfg is None:
        return copy.deepcopy(model).eval()
    new = Llama(cfg)
    new.load_state_dict(model.state_dict())
    return new.eval()


@torch.no_grad()
def permute_ffn(model: Llama, rng: np.random.Generator) -> Llama:
    """Every block's feed-forward units in a random order: the rows of ``gate_proj`` and
    ``up_proj`` and the columns of ``down_proj`` by one permutation per block."""
    new = _clone(model)
    for block in new.blocks:
        f = block.ffn
        perm = torch.from_numpy(rng.permutation(f.gate_proj.out_features))
        f.gate_proj.weight.copy_(f.gate_proj.weight[perm])
        f.up_proj.weight.copy_(f.up_proj.weight[perm])
        f.down_proj.weight.copy_(f.down_proj.weight[:, perm])
    return new


def _head_rows(order: np.ndarray, head_dim: int) -> torch.Tensor:
    """The rows of a projection with ``len(order)`` heads of ``head_dim`` rows each, head
    ``order[i]`` moved to position ``i``: int64 ``(len(order) * head_dim,)``."""
    return torch.from_numpy((order[:, None] * head_dim + np.arange(head_dim)).reshape(-1))


@torch.no_grad()
def permute_heads(model: Llama, rng: np.random.Generator) -> Llama:
    """Every block's attention heads in a random order that keeps the grouping: the key/value
    heads permuted, and each group's query heads permuted within it and moved with their
    key/value head (rows of q, k, v; columns of o). Whole heads move, so the rotary embedding
    (which pairs dimensions inside a head) is untouched."""
    new = _clone(model)
    c = new.cfg
    rep = c.heads // c.kv_heads
    for block in new.blocks:
        a = block.attn
        kv = rng.permutation(c.kv_heads)
        q = np.concatenate([g * rep + rng.permutation(rep) for g in kv])
        rows_q, rows_kv = _head_rows(q, c.head_dim), _head_rows(kv, c.head_dim)
        a.q_proj.weight.copy_(a.q_proj.weight[rows_q])
        a.k_proj.weight.copy_(a.k_proj.weight[rows_kv])
        a.v_proj.weight.copy_(a.v_proj.weight[rows_kv])
        a.o_proj.weight.copy_(a.o_proj.weight[:, rows_q])
    return new


def _readers(model: Llama):
    """(norm, the linears that read its output) for every RMSNorm of ``model``."""
    out = []
    for b in model.blocks:
        out.append((b.attn_norm, [b.attn.q_proj, b.attn.k_proj, b.attn.v_proj]))
        out.append((b.ffn_norm, [b.ffn.gate_proj, b.ffn.up_proj]))
    out.append((model.norm, [model.head]))
    return out


@torch.no_grad()
def fold_norms(model: Llama) -> Llama:
    """``model`` with every RMSNorm gain ``g`` folded into the linears that read the norm
    (``W -> W diag(g)``, columns scaled) and the norms left without gain
    (``Config.gain=False``): the same function."""
    new = Llama(model.cfg.replace(gain=False))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("norm.weight")}
    new.load_state_dict(state)
    for (norm, _), (_, linears) in zip(_readers(model), _readers(new)):
        for lin in linears:
            lin.weight.mul_(norm.weight[None, :])
    return new.eval()


def random_orthogonal(n: int, rng: np.random.Generator) -> torch.Tensor:
    """A random orthogonal matrix ``(n, n)`` float32 (QR of a Gaussian, signs fixed: Haar)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return torch.from_numpy((q * np.sign(np.diag(r))[None, :]).astype(np.float32))


@torch.no_grad()
def rotate_stream(model: Llama, rng: np.random.Generator) -> Llama:
    """The residual stream multiplied by a random orthogonal ``Q`` ``(hidden, hidden)``, as
    SliceGPT and QuaRot do: the norms' gains folded first (:func:`fold_norms`; an RMS norm
    without gain commutes with ``Q``), then the embedding ``E -> E Q``, the stream's writers
    (``o_proj``, ``down_proj``) ``W -> Q^T W`` and its readers (q, k, v, gate, up, the head)
    ``W -> W Q`` (torch's ``(out, in)`` orientation). The same function."""
    new = fold_norms(model)
    q = random_orthogonal(new.cfg.hidden, rng).double()

    def turn(p, left):
        p.copy_((q.T @ p.double() if left else p.double() @ q).float())

    turn(new.embed.weight, left=False)
    for block in new.blocks:
        for lin in (block.attn.o_proj, block.ffn.down_proj):
            turn(lin.weight, left=True)
    for _, linears in _readers(new):
        for lin in linears:
            turn(lin.weight, left=False)
    return new


@torch.no_grad()
def prune(model: Llama, fraction: float) -> Llama:
    """The smallest ``fraction`` of each Linear's weights by magnitude set to zero (every
    projection and the head; the embedding and the norms kept)."""
    new = _clone(model)
    for mod in new.modules():
        if isinstance(mod, nn.Linear):
            w = mod.weight
            cut = w.abs().flatten().kthvalue(max(1, int(fraction * w.numel()))).values
            w.mul_((w.abs() > cut).float())
    return new


def _blocks_state(model: Llama, order: list[int]) -> dict:
    """``model``'s state dict with its blocks taken in ``order`` (block ``order[i]`` becomes
    block ``i``; repeats copy)."""
    state, out = model.state_dict(), {}
    for k, v in state.items():
        if not k.startswith("blocks."):
            out[k] = v.clone()
    for i, j in enumerate(order):
        prefix = f"blocks.{j}."
        out.update({f"blocks.{i}.{k[len(prefix):]}": v.clone() for k, v in state.items()
                    if k.startswith(prefix)})
    return out


def drop_block(model: Llama, index: int) -> Llama:
    """``model`` without block ``index`` (one layer fewer)."""
    order = [i for i in range(model.cfg.layers) if i != index]
    new = Llama(model.cfg.replace(layers=len(order)))
    new.load_state_dict(_blocks_state(model, order))
    return new.eval()


def upscale(model: Llama, index: int) -> Llama:
    """Depth upscaling: block ``index`` duplicated (the copy right after it), one layer more."""
    order = list(range(index + 1)) + list(range(index, model.cfg.layers))
    new = Llama(model.cfg.replace(layers=len(order)))
    new.load_state_dict(_blocks_state(model, order))
    return new.eval()


def grow_vocab(model: Llama, vocab: int, seed: int) -> Llama:
    """The embedding and the head grown to ``vocab`` rows, the old rows kept and the new ones
    drawn at random (normal, the scale of the old rows' values)."""
    new = Llama(model.cfg.replace(vocab=vocab))
    state = model.state_dict()
    g = torch.Generator().manual_seed(seed)
    old = model.cfg.vocab
    for key in ("embed.weight", "head.weight"):
        grown = torch.randn(vocab, model.cfg.hidden, generator=g) * state[key].std()
        grown[:old] = state[key]
        state[key] = grown
    new.load_state_dict(state)
    return new.eval()


class LoRALinear(nn.Module):
    """``base(x) + x A^T B^T`` with ``A`` ``(rank, in)`` small random and ``B`` ``(out, rank)``
    zero at the start; ``base`` frozen."""

    def __init__(self, base: nn.Linear, rank: int):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.a = nn.Parameter(torch.randn(rank, base.in_features) / base.in_features ** 0.5)
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + (x @ self.a.T) @ self.b.T

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """``base`` with ``W += B A``."""
        self.base.weight.add_(self.b @ self.a)
        return self.base.requires_grad_(True)


def _swap(model: Llama, make) -> None:
    """Replace each :data:`LORA_TARGETS` module ``m`` of every block by ``make(m)``."""
    for block in model.blocks:
        for path in LORA_TARGETS:
            owner, name = path.split(".")
            parent = getattr(block, owner)
            setattr(parent, name, make(getattr(parent, name)))


def lora(model: Llama, rank: int, fit, seed: int) -> Llama:
    """A copy of ``model`` with rank-``rank`` adapters on :data:`LORA_TARGETS` (their ``A``
    drawn after ``torch.manual_seed(seed)``), trained by ``fit(model)`` (every other weight
    frozen) and merged into the weights (``W += B A``)."""
    new = _clone(model)
    torch.manual_seed(seed)
    for p in new.parameters():
        p.requires_grad_(False)
    _swap(new, lambda lin: LoRALinear(lin, rank))
    fit(new)
    _swap(new, lambda m: m.merged())
    for p in new.parameters():
        p.requires_grad_(True)
    return new.eval()


def float16_weights(src: Path, dst: Path) -> Path:
    """The ONNX file ``src`` with every float32 initializer of more than one value stored as
    float16 and cast back to float32 where the graph reads it (how half-precision weights are
    shipped for CPU runtimes); written to ``dst``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    model = onnx.load(src)
    g = model.graph
    casts, kept = [], []
    for t in g.initializer:
        if t.data_type != TensorProto.FLOAT or np.prod(t.dims) <= 1:
            kept.append(t)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16),
                                       f"{t.name}_fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [t.name], to=TensorProto.FLOAT))
    del g.initializer[:]
    g.initializer.extend(kept)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return dst


@torch.no_grad()
def half_rounded(model: Llama) -> Llama:
    """``model`` with every weight rounded to float16 (the torch twin of
    :func:`float16_weights`)."""
    new = _clone(model)
    for p in new.parameters():
        p.copy_(p.half().float())
    return new


def quantize_4bit(src: Path, dst: Path, block: int = 32) -> Path:
    """onnxruntime's 4-bit weight-only quantizer on ``src``: every MatMul with a constant weight
    becomes a ``com.microsoft.MatMulNBits`` (symmetric, blocks of ``block`` along the input
    axis); written to ``dst``."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    quant = MatMulNBitsQuantizer(onnx.load(src), bits=4, block_size=block, is_symmetric=True)
    quant.process()
    quant.model.save_model_to_file(str(dst))
    return dst


@torch.no_grad()
def dequantized(model: Llama, path: Path) -> tuple[Llama, int]:
    """A copy of ``model`` whose Linear weights are those the 4-bit file ``path`` computes with
    (each MatMulNBits node dequantized, :func:`onnx_lineage.model.blockquant.dequantize_nbits`,
    and put back on the module its node name gives, ``/blocks.0/ffn/gate_proj/MatMul_Q4``), and
    how many weights were replaced."""
    import onnx
    from onnx import numpy_helper
    from onnx_lineage.model.blockquant import dequantize_nbits
    m = onnx.load(path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    new, done = _clone(model), 0
    modules = dict(new.named_modules())
    for node in m.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        at = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        zero = init.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        w, _ = dequantize_nbits(init[node.input[1]], init[node.input[2]], zero, at["K"], at["N"],
                                at["bits"], at["block_size"])
        name = ".".join(node.name.strip("/").split("/")[:-1])
        modules[name].weight.copy_(torch.from_numpy(w))
        done += 1
    return new.eval(), done
