"""Data-free screening: which pairs of models deserve an exact lineage test.

A derived model keeps most of its first layer's units nearly unchanged (up to order and positive
scale); an independently trained one does not. The first layer is the one whose inputs are fixed
by the data, so its units can be compared without aligning anything. Each unit's incoming weights,
normalised, get a SimHash signature (``bands`` bands of ``bits`` random-hyperplane bits); units of
all models are bucketed by band, and two models become a candidate pair when at least
``min_fraction`` of the smaller model's units collide with a unit of the other. Bucketing costs
about linear time in the number of units: the exact tests that follow grow with the number of
candidates, not with n^2.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from onnx_lineage.model.parameters import Layer

_FIRST_KINDS = ("dense", "conv", "embedding", "linear")


@dataclass(frozen=True)
class Fingerprint:
    """One model's screening signature.

    Attributes
    ----------
    name : str
    key : tuple
        Input side of the first layer (its fan-in); only models with the same key are compared.
    codes : ndarray of shape (units, bands), int64
        SimHash code of every unit in every band.
    """

    name: str
    key: tuple
    codes: np.ndarray


def first_layer(layers: list[Layer]) -> Layer | None:
    """The first dense/conv/embedding layer (its inputs are the model's inputs)."""
    return next((x for x in layers if x.kind in _FIRST_KINDS), None)


def fingerprint(name: str, layers: list[Layer], bits: int = 16, bands: int = 16) -> Fingerprint | None:
    """SimHash codes of the first layer's units (None for a model without one)."""
    first = first_layer(layers)
    if first is None:
        return None
    w = first.weight.reshape(first.weight.shape[0], -1).astype(np.float64)
    w = w / (np.linalg.norm(w, axis=1, keepdims=True) + 1e-12)
    fan_in = w.shape[1]
    planes = np.random.default_rng(fan_in).standard_normal((fan_in, bits * bands))
    signs = (w @ planes > 0).reshape(len(w), bands, bits)
    codes = (signs * (1 << np.arange(bits))).sum(-1).astype(np.int64)
    return Fingerprint(name, (first.kind if first.kind != "linear" else "dense", fan_in), codes)


def candidates(fps: list[Fingerprint], min_fraction: float = 0.3) -> dict[tuple[str, str], float]:
    """Candidate pairs ``(a, b)`` (a < b) with the fraction of colliding units.

    Parameters
    ----------
    fps : list of Fingerprint
    min_fraction : float
        Smallest fraction of the smaller model's units that must collide.
    """
    buckets: dict[tuple, dict[str, set]] = {}
    for fp in fps:
        for unit, row in enumerate(fp.codes):
            for band, code in enumerate(row):
                buckets.setdefault((fp.key, band, int(code)), {}).setdefault(fp.name, set()).add(unit)
    hits: dict[tuple[str, str], list[set]] = {}
    for members in buckets.values():
        if len(members) < 2:
            continue
        for a, b in itertools.combinations(sorted(members), 2):
            h = hits.setdefault((a, b), [set(), set()])
            h[0] |= members[a]
            h[1] |= members[b]
    units = {fp.name: len(fp.codes) for fp in fps}
    out = {}
    for (a, b), (ua, ub) in hits.items():
        frac = min(len(ua) / units[a], len(ub) / units[b])
        if frac >= min_fraction:
            out[(a, b)] = frac
    return out
