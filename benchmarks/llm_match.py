"""MATCH, the activation-matching independence test of Zhu, Ahmed, Kuditipudi and Liang,
"Independence Tests for Language Models" (ICML 2025), written anew from the paper for
``llm_family.py``: the baseline onnx-lineage is compared with.

The statistic, per block ``i`` of the two models: feed both the same tokens, collect the
feed-forward layer's ``gate_proj`` and ``up_proj`` outputs (pre-activation) at every position,
``(positions, units)``; match A's units to B's by a linear assignment that maximises the summed
Pearson correlation of their gate activations, and again of their up activations; Spearman's
rank correlation of the two matchings (B's unit assigned to each of A's units, once by gate and
once by up) and its p-value. The blocks' p-values are combined by Fisher's method.

Null: A and B were trained independently. Under it, the unit matched to A's unit ``j`` by the
gate activations tells nothing of the one matched by the up activations: the two matchings are
unrelated and Spearman's test holds (its p-value is the one of two independent sequences). A
model derived from the other keeps each unit's gate and up rows together (a permutation moves
both), so both matchings find the same units and the correlation is near 1.

Where the shapes differ (this implementation's choices, not the paper's): blocks are compared
index by index up to the smaller depth (block ``i`` of A with block ``i`` of B); where the
feed-forward widths differ, the narrower model's units are each assigned a distinct unit of the
wider one (a rectangular assignment), so the matchings have the smaller width. The hidden width
does not enter: the activations are per feed-forward unit. The assignment maximises correlation
as described in the paper's text; the authors' code minimises the squared Euclidean distance of
the activations instead (the same matching when every unit's activations have one scale).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import combine_pvalues, spearmanr

#: The smallest p-value kept (Spearman's exact 0 for identical matchings, for Fisher's logs).
FLOOR = 1e-300


@dataclass(frozen=True)
class MatchTest:
    """MATCH on one pair: the combined p-value (Fisher), each compared block's Spearman
    correlation and p-value, and the seconds the matchings took (the activations, computed once
    per model, apart)."""

    p_value: float
    rho: list
    block_p: list
    seconds: float

    def to_dict(self) -> dict:
        return {"p_value": self.p_value, "rho": self.rho, "block_p": self.block_p,
                "seconds": self.seconds}


@torch.no_grad()
def ffn_activations(model, ids: np.ndarray, batch: int = 16) -> list:
    """For every block of ``model`` (a :class:`harness.llama.Llama`), the outputs of
    ``gate_proj`` and ``up_proj`` on the token rows ``ids`` (int64 ``(rows, tokens)``): a list of
    pairs of float64 arrays ``(rows * tokens, ff)``."""
    out = {}
    hooks = []
    for i, block in enumerate(model.blocks):
        for name in ("gate_proj", "up_proj"):
            out[i, name] = []
            hooks.append(getattr(block.ffn, name).register_forward_hook(
                lambda m, inp, y, key=(i, name): out[key].append(y.reshape(-1, y.shape[-1]))))
    try:
        for start in range(0, len(ids), batch):
            model.trunk(torch.from_numpy(ids[start:start + batch]))
    finally:
        for h in hooks:
            h.remove()
    return [tuple(torch.cat(out[i, n]).double().numpy() for n in ("gate_proj", "up_proj"))
            for i in range(len(model.blocks))]


def _standardised(x: np.ndarray) -> np.ndarray:
    """Each column of ``x`` ``(n, units)`` at mean 0 and norm 1 (a constant column stays 0)."""
    x = x - x.mean(0)
    return x / np.maximum(np.linalg.norm(x, axis=0), 1e-12)


def assignment(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The units of ``y`` ``(n, units_y)`` matched to those of ``x`` ``(n, units_x)`` by the
    linear assignment of largest summed correlation: int ``(min(units_x, units_y),)``, for each
    unit of the narrower model (in its order) its partner in the wider one."""
    corr = _standardised(x).T @ _standardised(y)
    if corr.shape[0] > corr.shape[1]:
        corr = corr.T
    _, cols = linear_sum_assignment(corr, maximize=True)
    return cols


def block_test(acts_a: tuple, acts_b: tuple) -> tuple[float, float]:
    """Spearman's correlation of the gate and the up matchings of one block, and its p-value
    (:data:`FLOOR` at least); ``acts_*``: (gate, up) of :func:`ffn_activations`."""
    by_gate = assignment(acts_a[0], acts_b[0])
    by_up = assignment(acts_a[1], acts_b[1])
    rho, p = spearmanr(by_gate, by_up)
    if not np.isfinite(rho):  # a constant matching: nothing to correlate
        return 0.0, 1.0
    return float(rho), max(float(p), FLOOR)


def match_test(acts_a: list, acts_b: list) -> MatchTest:
    """MATCH on two models' activations (:func:`ffn_activations` of each on the same tokens):
    blocks of the same index up to the smaller depth, combined by Fisher's method."""
    t0 = time.perf_counter()
    rows = [block_test(a, b) for a, b in zip(acts_a, acts_b)]
    ps = [p for _, p in rows]
    combined = max(float(combine_pvalues(ps, method="fisher").pvalue), 0.0)
    return MatchTest(combined, [r for r, _ in rows], ps, time.perf_counter() - t0)
