"""Undoing a permutation of a residual stream (:mod:`onnx_lineage.model.streams`).

A stream's units are permuted by one permutation across all of its members: rows of the writers,
input columns of the readers, parameters of the LayerNorms. :func:`align_streams` pairs A's and
B's streams through the matched layers, scores every pair of units by the sum over members of the
cosine similarity of their per-unit features, and applies the Hungarian assignment to B.

Per unit, a writer gives its incoming weights and bias, a reader the weights that read the unit, a
LayerNorm its scale and shift. Where the other axis of a member is itself a permuted hidden layer
(a feed-forward block's inner units, aligned afterwards by :func:`.permutation.align_units`, or the
stream itself, for a layer that reads and writes it), the feature is that vector sorted, which no
permutation of the other axis changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from onnx_lineage.matching.permutation import unit_cosine
from onnx_lineage.model.streams import Stream


@dataclass(frozen=True)
class StreamAlignment:
    """One stream of B put in A's unit order.

    Attributes
    ----------
    width : int
    perm : ndarray of shape (width,), int64
        B's unit ``perm[u]`` became unit ``u``.
    members : tuple of int
        B's layers whose parameters were permuted.
    """

    width: int
    perm: np.ndarray
    members: tuple

    @property
    def permuted(self) -> bool:
        return bool(np.any(self.perm != np.arange(self.perm.size)))


def pair_streams(streams_a: list[Stream], streams_b: list[Stream], b_of: dict) -> tuple[list, list]:
    """Streams of A and B that hold the same matched layers in the same roles.

    Returns
    -------
    pairs : list of (Stream, Stream)
    limits : list of str
        Streams left in place, and why.
    """
    pairs, limits = [], []
    a_of = {v: k for k, v in b_of.items()}
    for sa in streams_a:
        if sa.reason:
            limits.append(f"residual stream of {sa.width} units left in place in A ({sa.reason})")
            continue
        sb = next((s for s in streams_b if set(s.members) & {b_of.get(i) for i in sa.members}), None)
        if sb is None or sb.reason:
            why = sb.reason if sb is not None else "no stream over the same layers in B"
            limits.append(f"residual stream of {sa.width} units left in place ({why})")
            continue
        same_roles = all({b_of[i] for i in getattr(sa, role) if i in b_of}
                         == {j for j in getattr(sb, role) if j in a_of}
                         for role in ("writers", "readers", "followers"))
        if sa.width != sb.width or not same_roles or not any(i in b_of for i in sa.writers):
            limits.append(f"residual stream of {sa.width} units left in place (its layers differ "
                          "between A and B)")
            continue
        pairs.append((sa, sb))
    return pairs, limits


def align_streams(pairs: list, b_of: dict, a_params: dict, b_params: dict,
                  inner_out: set, inner_in: set) -> list[StreamAlignment]:
    """Permute each paired stream of B into A's unit order, in place on ``b_params``.

    Parameters
    ----------
    pairs : list of (Stream, Stream)
        From :func:`pair_streams`.
    b_of : dict
        A's layer index -> B's, for matched layers.
    a_params, b_params : dict of layer index to dict of str to ndarray
        Canonical parameters (``b_params`` is modified).
    inner_out, inner_in : set of int
        B's layers whose outputs (inputs) are hidden units permuted elsewhere: their features are
        sorted along that axis.
    """
    done = []
    for sa, _ in pairs:
        sim = np.zeros((sa.width, sa.width))
        both = set(sa.writers) & set(sa.readers)  # read and written: the other axis is the stream
        for role in ("writers", "readers", "followers"):
            for ai in getattr(sa, role):
                bj = b_of.get(ai)
                if bj is None:
                    continue
                sorted_ = ai in both or (bj in inner_in if role == "writers" else bj in inner_out)
                sim += unit_cosine(_features(a_params[ai], role, sorted_),
                                   _features(b_params[bj], role, sorted_))
        _, perm = linear_sum_assignment(sim, maximize=True)
        members = tuple(b_of[i] for i in sa.members if i in b_of)
        for role in ("writers", "readers", "followers"):
            for ai in getattr(sa, role):
                if ai in b_of:
                    b_params[b_of[ai]] = _permuted(b_params[b_of[ai]], role, perm)
        done.append(StreamAlignment(sa.width, perm, members))
    return done


def _features(params: dict, role: str, sort: bool) -> np.ndarray:
    """Per stream unit, shape (width, features)."""
    if role == "followers":
        return np.stack([params[k] for k in sorted(params) if k != "eps"], axis=1)
    w = params["weight"]
    feat = w.reshape(w.shape[0], -1) if role == "writers" else w.T
    if sort:
        feat = np.sort(feat, axis=1)
    if role == "writers" and "bias" in params:
        feat = np.concatenate([feat, params["bias"][:, None]], axis=1)
    return feat


def _permuted(params: dict, role: str, perm: np.ndarray) -> dict:
    if role == "readers":
        return dict(params, weight=np.ascontiguousarray(params["weight"][:, perm]))
    if role == "writers":
        out = dict(params, weight=np.ascontiguousarray(params["weight"][perm]))
        if "bias" in params:
            out["bias"] = params["bias"][perm]
        return out
    return {k: (v if k == "eps" else v[perm]) for k, v in params.items()}
