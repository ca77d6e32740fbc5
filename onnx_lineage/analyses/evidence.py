"""Data-free evidence: how similar B's aligned weights are to A's, against a null.

The statistic is the median, over all hidden and output units of the matched dense/conv/embedding
layers, of the cosine between A's and B's incoming weights of that unit, restricted to the weights
that are non-zero in both (so a pruned child is compared on what survived).

The null "independently initialised" is built by surrogates: B's weights shuffled within every
unit (same per-unit weight distributions, no shared structure), then aligned to A with the same
Hungarian unit matching as the real pair, so the surrogates get the same advantage from alignment.
The p-value is the normal tail of the observed statistic under the surrogates' mean and spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onnx_lineage.matching.permutation import Chain, align_units

_KINDS = ("dense", "conv", "embedding", "linear")


@dataclass(frozen=True)
class WeightEvidence:
    """Unit-similarity statistic, its null distribution and p-value."""

    statistic: float
    null_mean: float
    null_std: float
    p_value: float
    units: int
    per_layer: dict


def unit_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine of ``a`` and ``b`` (units, ...) on the entries non-zero in both.

    Rows with fewer than two shared non-zero entries give NaN.
    """
    a2 = a.reshape(a.shape[0], -1).astype(np.float64)
    b2 = b.reshape(b.shape[0], -1).astype(np.float64)
    mask = (a2 != 0) & (b2 != 0)
    am, bm = np.where(mask, a2, 0), np.where(mask, b2, 0)
    num = (am * bm).sum(1)
    den = np.sqrt((am * am).sum(1) * (bm * bm).sum(1))
    out = np.where(den > 0, num / np.maximum(den, 1e-30), np.nan)
    out[mask.sum(1) < 2] = np.nan
    return out


def _statistic(a_layers, aligned) -> tuple[float, int, dict]:
    values, per_layer = [], {}
    for layer in a_layers:
        if layer.kind not in _KINDS or layer.index not in aligned:
            continue
        c = unit_cosines(layer.weight, aligned[layer.index]["weight"])
        c = c[np.isfinite(c)]
        if c.size:
            per_layer[layer.index] = float(np.median(c))
            values.append(c)
    if not values:
        return float("nan"), 0, per_layer
    allv = np.concatenate(values)
    return float(np.median(allv)), int(allv.size), per_layer


def weight_evidence(m, chains, rng: np.random.Generator, n_null: int = 12) -> WeightEvidence:
    """Statistic of the aligned pair and its p-value under shuffled, re-aligned surrogates.

    Parameters
    ----------
    m : MatchResult
    chains : list of Chain
        The permutable junctions used by the match (re-used to align the surrogates).
    rng : numpy Generator
    n_null : int
        Number of surrogates.
    """
    stat, units, per_layer = _statistic(m.a_layers, m.b_aligned)
    if not units:
        return WeightEvidence(float("nan"), float("nan"), float("nan"), float("nan"), 0, {})
    a_params = {layer.index: layer.params for layer in m.a_layers if layer.index in m.b_aligned}
    null = []
    for _ in range(n_null):
        surrogate = {}
        for idx, p in m.b_aligned.items():
            w = p["weight"].reshape(p["weight"].shape[0], -1)
            shuffled = np.take_along_axis(w, rng.random(w.shape).argsort(axis=1), axis=1)
            surrogate[idx] = dict(p, weight=shuffled.reshape(p["weight"].shape))
        a_chains = [_as_a_chain(c) for c in chains]
        if a_chains:
            align_units(a_params, surrogate, a_chains, rescale=False)
        s, _, _ = _statistic(m.a_layers, surrogate)
        null.append(s)
    if not null:
        return WeightEvidence(stat, float("nan"), float("nan"), float("nan"), units, per_layer)
    null = np.asarray(null)
    mu, sd = float(np.nanmean(null)), float(np.nanstd(null))
    sd = max(sd, 1e-3)
    p = 0.5 * math.erfc((stat - mu) / (sd * math.sqrt(2)))
    return WeightEvidence(stat, mu, sd, float(p), units, per_layer)


def _as_a_chain(c: Chain) -> Chain:
    """The same junction expressed in A's indices on both sides (surrogates live in A's layout)."""
    return Chain(c.a, c.a, c.a_next, c.a_next, [(x, x) for x, _ in c.followers], c.spatial,
                 c.homogeneous, c.channels_last)
