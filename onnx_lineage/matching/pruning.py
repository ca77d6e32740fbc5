"""Width-pruned children: hidden layers with fewer units in one model than in the other.

Minitron- or Sheared-LLaMA-style width pruning removes a layer's weakest units (rows of its
weight, their per-unit normalisation, the columns of the next layer that read them) and
fine-tunes the rest. The child's layers then have smaller unit axes than the parent's, in the
same places. :func:`pruned_chains` accepts such pairs from
:func:`~onnx_lineage.matching.align.align` only where every difference in size is a hidden-unit
axis of a permutable junction (:mod:`onnx_lineage.model.topology`) in both models, and
:func:`pad` gives the smaller model zero units at the end of each such axis: a unit with zero
incoming and outgoing weights contributes nothing, so the padded model computes the same function
in the larger model's shapes, and everything after (unit matching, the tests, the sweep) compares
the two on the units the child kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx_lineage.matching.align import pruned_axes


@dataclass(frozen=True)
class Pruned:
    """One junction whose units differ in number.

    Attributes
    ----------
    side : str
        ``"a"`` or ``"b"``: the model with fewer units (the pruned one, if either is).
    kept : int
        Its units.
    width : int
        The other model's units.
    """

    side: str
    kept: int
    width: int


def pruned_chains(pairs: list, la: list, lb: list, links_a: dict, links_b: dict
                  ) -> tuple[list, dict]:
    """The pairs whose differences in size are all explained by pruned junctions.

    Parameters
    ----------
    pairs : list of (int, int)
        Positions in ``la`` and ``lb`` (from ``align(..., pruned=True)``).
    la, lb : list of Layer
    links_a, links_b : dict of layer index to Link

    Returns
    -------
    pairs : list of (int, int)
        The pairs kept (unexplained ones dropped).
    pruned : dict of A's layer index to Pruned
        Per junction (the layer whose output units differ).
    """
    while True:
        b_of = {la[i].index: lb[j].index for i, j in pairs}
        pruned, explained = {}, {}  # A index -> the unit axes accounted for
        for i, j in pairs:
            a, b = la[i], lb[j]
            if a.kind not in ("dense", "conv") or a.units == b.units:
                continue
            link_a, link_b = links_a.get(a.index), links_b.get(b.index)
            if (link_a is None or link_b is None or link_a.next is None or link_b.next is None
                    or link_a.next_groups != 1 or link_b.next_groups != 1
                    or link_a.next_span or link_b.next_span
                    or b_of.get(link_a.next) != link_b.next or link_a.spatial != link_b.spatial
                    or [b_of.get(f) for f in link_a.followers] != list(link_b.followers)):
                continue
            side = "b" if b.units < a.units else "a"
            pruned[a.index] = Pruned(side, min(a.units, b.units), max(a.units, b.units))
            explained.setdefault(a.index, set()).add(0)
            for f in link_a.followers:
                explained.setdefault(f, set()).add(0)
            explained.setdefault(link_a.next, set()).add(1)
        keep = [(i, j) for i, j in pairs
                if set(pruned_axes(la[i], lb[j]) or ()) <= explained.get(la[i].index, set())]
        if len(keep) == len(pairs):
            return keep, pruned
        pairs = keep


def pad(pruned: dict, links_a: dict, a_params: dict, b_params: dict, b_of: dict) -> None:
    """Give the smaller model of every pruned junction zero units at the end, in place.

    Parameters
    ----------
    pruned : dict of A's layer index to Pruned
    links_a : dict of A's layer index to Link
    a_params, b_params : dict of layer index to dict of str to ndarray
        Canonical parameters (A's and B's own indices); the smaller side's are replaced.
    b_of : dict
        A's layer index -> B's.
    """
    for ai, p in pruned.items():
        link = links_a[ai]
        params, index = (a_params, lambda i: i) if p.side == "a" else (b_params, b_of.get)
        extra = p.width - p.kept
        w = index(ai)
        params[w] = {k: _pad_rows(v, extra, k) for k, v in params[w].items()}
        for f in link.followers:
            params[index(f)] = {k: _pad_rows(v, extra, k) for k, v in params[index(f)].items()}
        n = index(link.next)
        weight = params[n]["weight"]
        params[n] = dict(params[n], weight=_pad_columns(weight, p.kept, extra, link.spatial,
                                                        link.channels_last))


def _pad_rows(v: np.ndarray, extra: int, key: str) -> np.ndarray:
    if key == "eps" or np.ndim(v) == 0:
        return v
    fill = 1.0 if key == "var" else 0.0  # a padded BatchNorm divides by sqrt(var + eps)
    pad = np.full((extra,) + v.shape[1:], fill, v.dtype)
    return np.concatenate([v, pad])


def _pad_columns(w: np.ndarray, units: int, extra: int, spatial: int,
                 channels_last: bool) -> np.ndarray:
    """Zero inputs for ``extra`` new units after the ``units`` that ``w`` reads."""
    if w.ndim != 2 and channels_last:  # a recurrent layer's W: units on its last axis
        return np.concatenate([w, np.zeros(w.shape[:-1] + (extra,), w.dtype)], axis=-1)
    if w.ndim != 2:  # a convolution: input channels on axis 1
        return np.concatenate([w, np.zeros((w.shape[0], extra) + w.shape[2:], w.dtype)], axis=1)
    out = w.shape[0]
    if channels_last:  # column s * units + u
        blocks = w.reshape(out, spatial, units)
        return np.concatenate([blocks, np.zeros((out, spatial, extra), w.dtype)],
                              axis=2).reshape(out, -1)
    blocks = w.reshape(out, units, spatial)
    return np.concatenate([blocks, np.zeros((out, extra, spatial), w.dtype)],
                          axis=1).reshape(out, -1)
