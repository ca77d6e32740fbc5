"""Undoing a permutation of a residual stream (:mod:`onnx_lineage.model.streams`).

A stream's units are permuted by one permutation across all of its members: rows of the writers,
input columns of the readers, parameters of the LayerNorms. ``match`` puts B's stream in A's order
by the stream's class matching (:mod:`onnx_lineage.matching.classes`, the one the exact tests
read) with :func:`permute_stream`. A stream without a class (none of its writers matched) is
aligned by :func:`align_streams`: it pairs A's and B's streams through the matched layers, scores
every pair of units by the sum over members of the cosine similarity of their per-unit features,
and applies the Hungarian assignment to B.

Per unit, a writer gives its incoming weights and bias, a reader the weights that read the unit, a
LayerNorm its scale and shift. Where the other axis of a member is itself a permuted hidden layer
(a feed-forward block's inner units, aligned afterwards by :func:`.permutation.align_units`, or the
stream itself, for a layer that reads and writes it), the feature is that vector sorted, which no
permutation of the other axis changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from onnx_lineage.matching.permutation import (CosineSum, Reader, per_unit, permute_units,
                                               side_by_side)
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
    residual : bool
        A residual stream (False: gated hidden units).
    """

    width: int
    perm: np.ndarray
    members: tuple
    residual: bool = True

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
        # the most shared layers in the same roles; ties to the first
        shared, _, sb = max(((_overlap(sa, s, b_of), -k, s) for k, s in enumerate(streams_b)),
                            default=(0, 0, None))
        sb = sb if shared else None
        if sb is None or sb.reason:
            why = sb.reason if sb is not None else "no stream over the same layers in B"
            limits.append(f"residual stream of {sa.width} units left in place ({why})")
            continue
        same_roles = all({b_of[i] for i in getattr(sa, role) if i in b_of}
                         == {j for j in getattr(sb, role) if j in a_of}
                         for role in ("writers", "readers", "followers"))
        if not same_roles and (sa.pinned or sb.pinned):
            # compared in place, never permuted: the members both models give the same role
            # are enough to match its units (a cousin of another depth, its blocks paired apart)
            sa, same_roles = _agreeing(sa, sb, b_of), True
        same_blocks = (all(sa.span(i) == sb.span(b_of[i]) for i in sa.readers if i in b_of)
                       and all(sa.tiling(i) == sb.tiling(b_of[i]) for i in sa.writers
                               if i in b_of))
        if (sa.width != sb.width or not same_roles or not same_blocks
                or not any(i in b_of for i in sa.writers)):
            limits.append(f"residual stream of {sa.width} units left in place (its layers differ "
                          "between A and B)")
            continue
        pairs.append((sa, sb))
    return pairs, limits


def _agreeing(sa: Stream, sb: Stream, b_of: dict) -> Stream:
    """A's stream with only the members matched to a member of B's stream in the same role."""
    keep = {role: tuple(i for i in getattr(sa, role) if b_of.get(i) in getattr(sb, role))
            for role in ("writers", "readers", "followers")}
    return dataclasses.replace(sa, **keep)


def _overlap(sa: Stream, sb: Stream, b_of: dict) -> int:
    """Matched layers that A's stream and B's hold in the same role (a layer can read one stream
    and write another)."""
    return sum(len({b_of.get(i) for i in getattr(sa, role)} & set(getattr(sb, role)))
               for role in ("writers", "readers", "followers"))


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
    all_writers = {i for sa, _ in pairs for i in sa.writers}
    all_readers = {i for sa, _ in pairs for i in sa.readers}
    for sa, _ in pairs:
        blocks = [(role, ai, b_of[ai]) for role in ("writers", "readers", "followers")
                  for ai in getattr(sa, role) if ai in b_of]
        sim = CosineSum(sa.width, sa.width, sum(_width(a_params[ai], role, sa.tiling(ai))
                                                for role, ai, _ in blocks))
        for role, ai, bj in blocks:
            # the other axis is permuted too (hidden units, this or another stream): sorted
            sorted_ = (ai in all_readers or bj in inner_in if role == "writers"
                       else ai in all_writers or bj in inner_out)
            span = sa.span(ai) if role == "readers" else ()
            sim.add(_features(a_params[ai], role, sorted_, span, sa.tiling(ai)),
                    _features(b_params[bj], role, sorted_, span, sa.tiling(ai)))
        done.append(permute_stream(sa, b_of, b_params, sim.matching()))
    return done


def permute_stream(sa: Stream, b_of: dict, b_params: dict, perm: np.ndarray) -> StreamAlignment:
    """Put B's stream paired with A's ``sa`` in A's unit order by ``perm`` (B's unit ``perm[u]``
    becomes unit ``u``), in place on ``b_params``: rows of its writers, input columns of its
    readers, parameters of its followers; nothing is copied for the identity."""
    if np.any(perm != np.arange(perm.size)):
        permute_units(b_params, perm, tuple(b_of[i] for i in sa.writers if i in b_of),
                      tuple(Reader(b_of[i], span=sa.span(i)) for i in sa.readers if i in b_of),
                      tuple(b_of[i] for i in sa.followers if i in b_of), release=True,
                      tiles={b_of[i]: k for i, k in sa.tiles if i in b_of})
    members = tuple(b_of[i] for i in sa.members if i in b_of)
    return StreamAlignment(sa.width, perm, members, sa.residual)


def _width(params: dict, role: str, tiles: int = 1) -> int:
    """Features per stream unit that :func:`_features` gives, from the shapes alone (a block
    reader's as a whole one's: its features are per column; a tiled writer's ``tiles`` rows
    per unit)."""
    if role == "followers":
        values = [v for k, v in sorted(params.items()) if k != "eps"]
        return sum(v.size for v in values) // values[0].shape[0]
    w = params["weight"]
    per = w.size // (w.shape[0] if role == "writers" else w.shape[1])
    return tiles * (per + (1 if role == "writers" and "bias" in params else 0))


def _features(params: dict, role: str, sort: bool, span: tuple = (), tiles: int = 1
              ) -> np.ndarray:
    """Per stream unit, shape (width, features); a reader's columns ``span[0]:span[1]`` only
    (one block of a Concat) when given; a writer's ``tiles`` blocks of rows side by side."""
    if role == "followers":
        return per_unit(params)
    w = (params["weight"] if role == "writers"
         else np.moveaxis(Reader(0, span=span).columns(params["weight"]), 1, 0))
    feat = w.reshape(w.shape[0], w.shape[1], -1)  # (units, other axis, kernel positions)
    if sort:  # each kernel position's values sorted over the other axis
        feat = np.sort(feat, axis=1)
    feat = feat.reshape(w.shape[0], -1)
    if role == "writers" and "bias" in params:
        feat = np.concatenate([feat, params["bias"][:, None]], axis=1)
    if tiles > 1:  # (tiles * units, f) -> (units, tiles * f)
        feat = side_by_side(feat, tiles).reshape(feat.shape[0] // tiles, -1)
    return feat
