"""A small Llama-style decoder in plain PyTorch, and byte-level text to train it on.

The model: a token embedding ``(vocab, hidden)``, ``layers`` pre-norm blocks (RMSNorm with a
trained per-unit gain, grouped-query attention with rotary position embedding and a causal mask,
RMSNorm, a SwiGLU feed-forward layer of separate ``gate_proj``, ``up_proj`` and ``down_proj``
without bias), a final RMSNorm and an untied vocabulary head. ``forward`` returns the logits of
the next token at the last position, ``(batch, vocab)``: the model read as a classifier over the
vocabulary (how ``llm_family.py`` exports it). With ``Config.gain=False`` the norms have no gain
(plain RMS normalisation), the form a rotated residual stream needs (SliceGPT, QuaRot).

The text: the Python standard library's own ``.py`` sources (they ship with every Python), the
top-level files of ``sysconfig.get_paths()["stdlib"]`` in sorted order, concatenated as bytes:
token ids 0-255. torch is imported at module level: only scripts that train import this module.
"""

from __future__ import annotations

import dataclasses
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Config:
    """The shape of a decoder: ``hidden`` split into ``heads`` query heads of ``hidden // heads``
    dimensions sharing ``kv_heads`` key/value heads, ``ff`` feed-forward units, ``context``
    positions at most; ``gain``: the norms have a trained gain."""

    vocab: int = 256
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    ff: int = 344
    context: int = 64
    gain: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def replace(self, **changes) -> "Config":
        """This config with ``changes`` (field names and values)."""
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        """``"h128 L4 ff344"``: the shape as the tables print it."""
        return f"h{self.hidden} L{self.layers} ff{self.ff}" + ("" if self.vocab == 256
                                                                else f" v{self.vocab}")


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps)`` over the last axis, times a trained gain ``(n,)`` unless
    ``gain`` is False (then no Mul in the export at all)."""

    def __init__(self, n: int, gain: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n)) if gain else None

    def forward(self, x):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x if self.weight is None else x * self.weight


def rotary_tables(cfg: Config, base: float = 10000.0):
    """cos and sin of the rotary embedding, each ``(context, head_dim)`` float32 (the half-split
    layout of Llama: dimension ``i`` and ``i + head_dim / 2`` rotate together)."""
    half = cfg.head_dim // 2
    freq = base ** (-torch.arange(half, dtype=torch.float32) / half)
    angle = torch.arange(cfg.context, dtype=torch.float32)[:, None] * freq[None, :]
    angle = torch.cat([angle, angle], dim=-1)
    return angle.cos(), angle.sin()


def rotate(x, cos, sin):
    """The rotary embedding of ``x`` ``(batch, heads, tokens, head_dim)``; ``cos``, ``sin``
    ``(tokens, head_dim)``."""
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + turned * sin


class Attention(nn.Module):
    """Grouped-query attention: ``heads`` query heads, query head ``h`` reads key/value head
    ``h // (heads // kv_heads)``; causal; rotary positions on queries and keys."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        d, kv = cfg.hidden, cfg.kv_heads * cfg.head_dim
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv, bias=False)
        self.v_proj = nn.Linear(d, kv, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin, causal):
        """``x`` ``(batch, tokens, hidden)`` -> ``(batch, tokens, hidden)``; ``causal``
        ``(tokens, tokens)`` bool, True above the diagonal (masked)."""
        c = self.cfg
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, c.heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        rep = c.heads // c.kv_heads
        k = k[:, :, None].expand(b, c.kv_heads, rep, t, c.head_dim).reshape(b, c.heads, t, -1)
        v = v[:, :, None].expand(b, c.kv_heads, rep, t, c.head_dim).reshape(b, c.heads, t, -1)
        att = (q @ k.transpose(-2, -1)) * (c.head_dim ** -0.5)
        att = att.masked_fill(causal, float("-inf")).softmax(-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(b, t, c.hidden))


class FeedForward(nn.Module):
    """SwiGLU: ``down_proj(silu(gate_proj(x)) * up_proj(x))``, ``ff`` units, no bias."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden, cfg.ff, bias=False)
        self.up_proj = nn.Linear(cfg.hidden, cfg.ff, bias=False)
        self.down_proj = nn.Linear(cfg.ff, cfg.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm: ``h + attn(attn_norm(h))``, then ``h + ffn(ffn_norm(h))``."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden, cfg.gain)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.hidden, cfg.gain)
        self.ffn = FeedForward(cfg)

    def forward(self, h, cos, sin, causal):
        h = h + self.attn(self.attn_norm(h), cos, sin, causal)
        return h + self.ffn(self.ffn_norm(h))


class Llama(nn.Module):
    """The decoder (module docstring). ``forward(ids)``: ``ids`` ``(batch, tokens)`` int64 ->
    next-token logits at the last position ``(batch, vocab)``; :meth:`all_logits` gives them at
    every position ``(batch, tokens, vocab)`` (training)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.gain)
        self.head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)
        cos, sin = rotary_tables(cfg)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        mask = torch.ones(cfg.context, cfg.context, dtype=torch.bool).triu(1)
        self.register_buffer("causal", mask, persistent=False)
        nn.init.normal_(self.embed.weight, std=0.02)

    def trunk(self, ids):
        """The residual stream after the last block, ``(batch, tokens, hidden)``."""
        t = ids.shape[1]
        cos, sin, causal = self.cos[:t], self.sin[:t], self.causal[:t, :t]
        h = self.embed(ids)
        for block in self.blocks:
            h = block(h, cos, sin, causal)
        return h

    def forward(self, ids):
        return self.head(self.norm(self.trunk(ids)[:, -1]))

    def all_logits(self, ids):
        return self.head(self.norm(self.trunk(ids)))


def stdlib_bytes(limit: int | None = None) -> np.ndarray:
    """The top-level ``.py`` files of the standard library, sorted by name and concatenated:
    uint8 ``(n,)``, the first ``limit`` bytes (all without)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, total = [], 0
    for path in sorted(root.glob("*.py")):
        chunks.append(path.read_bytes())
        total += len(chunks[-1])
        if limit is not None and total >= limit:
            break
    return np.frombuffer(b"".join(chunks), np.uint8)[:limit].copy()


def windows(text: np.ndarray, start: int, count: int, length: int) -> np.ndarray:
    """``count`` consecutive, non-overlapping windows of ``length`` tokens from ``text`` at byte
    ``start``: int64 ``(count, length)``."""
    end = start + count * length
    if end > len(text):
        raise ValueError(f"the text has {len(text):,} bytes, {end:,} asked for")
    return text[start:end].astype(np.int64).reshape(count, length)


def next_token_loss(model: Llama, rows):
    """Mean cross-entropy of the next token at every position of ``rows`` (int64 tensor
    ``(batch, tokens + 1)``): a scalar tensor."""
    logits = model.all_logits(rows[:, :-1])
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                       rows[:, 1:].reshape(-1))
