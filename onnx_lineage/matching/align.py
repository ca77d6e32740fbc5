"""Sequence alignment of two canonical layer lists, by kind and shape, never by name.

An order-preserving alignment (longest common subsequence with compatibility) tolerates a new
head, layers added or removed, and unmatched tails. Names only break ties between alignments of
equal size.
"""

from __future__ import annotations

import numpy as np

from onnx_lineage.matching.layout import kernel_layout
from onnx_lineage.model.parameters import Layer, as_single

#: Kinds that may be matched with each other (a LinearClassifier is a dense layer).
_FAMILY = {"dense": "dense", "linear": "dense", "conv": "conv", "conv_transpose": "conv_transpose",
           "batchnorm": "batchnorm", "layernorm": "layernorm", "groupnorm": "groupnorm", "prelu": "prelu",
           "embedding": "embedding",
           "lstm": "lstm", "gru": "gru", "rnn": "rnn"}


def compatible(a: Layer, b: Layer, pruned: bool = False) -> bool:
    """Same layer family and the same shape of every parameter they both hold (a convolution's
    kernel in any layout of :func:`.layout.kernel_layout`); with ``pruned``, the unit axes (a
    weight's first two, a per-unit layer's only one) may be smaller in one model than in the
    other, all of them on the same side (a width-pruned child)."""
    if _FAMILY.get(a.kind) != _FAMILY.get(b.kind) or a.groups != b.groups:
        return False
    if "weight" not in a.params or "weight" not in b.params:
        return False
    if not pruned:
        conv = _FAMILY.get(a.kind) in ("conv", "conv_transpose")
        return all(a.params[k].shape == b.params[k].shape
                   or (conv and k == "weight"
                       and kernel_layout(a.params[k].shape, b.params[k].shape) is not None)
                   for k in set(a.params) & set(b.params))
    return pruned_axes(a, b) is not None


def pruned_axes(a: Layer, b: Layer) -> tuple[int, ...] | None:
    """The unit axes of the weight on which ``a`` and ``b`` differ in size, all smaller on one
    side, every other axis equal; None if they differ otherwise."""
    wa, wb = a.params["weight"].shape, b.params["weight"].shape
    if len(wa) != len(wb) or wa[2:] != wb[2:] or a.groups != 1 or len(wa) > 4:
        return None
    signs = {np.sign(x - y) for x, y in zip(wa[:2], wb[:2])} - {0}
    if len(signs) > 1:
        return None
    return tuple(k for k in range(min(len(wa), 2)) if wa[k] != wb[k])


def align(a: list[Layer], b: list[Layer], pruned: bool = False,
          by_weights: bool = False) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of positions in ``a`` and ``b``, increasing in both, as many as possible.

    Parameters
    ----------
    a, b : list of Layer
    pruned : bool
        Pair layers whose unit axes differ in size too (:func:`compatible`); pairs of equal
        shapes are preferred.
    by_weights : bool
        Among alignments, prefer the one whose pairs' weights agree most (the cosine of their
        centred weights in their own unit order, up to half a pair's worth each): where one
        model has layers the other lacks (dropped, duplicated, a subset of a deeper teacher), the
        layers that came from each other are put side by side instead of the first ones of the
        same shape. Layers of one lineage keep their order and stay close; distinct layers of
        one model, or of independent models, are near orthogonal.

    Returns
    -------
    list of (int, int)
    """
    n, m = len(a), len(b)
    ua, ub = ([_centred_unit(x) for x in a], [_centred_unit(x) for x in b]) if by_weights \
        else (None, None)

    def gain(i, j):
        if compatible(a[i], b[j]):
            bonus = 0.5 * max(float(ua[i] @ ub[j]), 0.0) if by_weights else 0.0
            return 1.0 + bonus + (1e-3 if a[i].node == b[j].node else 0.0)
        if pruned and compatible(a[i], b[j], pruned=True):
            return 1.0 - 1e-2
        return None

    gains = [[gain(i, j) for j in range(m)] for i in range(n)]
    score = np.zeros((n + 1, m + 1))
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best = max(score[i + 1, j], score[i, j + 1])
            if gains[i][j] is not None:
                best = max(best, gains[i][j] + score[i + 1, j + 1])
            score[i, j] = best
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if gains[i][j] is not None and np.isclose(score[i, j], gains[i][j] + score[i + 1, j + 1]):
            pairs.append((i, j))
            i, j = i + 1, j + 1
            continue
        if np.isclose(score[i, j], score[i + 1, j]):
            i += 1
        else:
            j += 1
    return pairs


def _centred_unit(layer: Layer) -> np.ndarray:
    """A layer's weight, flattened, centred and scaled to unit length (zero stays zero)."""
    w = as_single(layer.params["weight"]).ravel()
    w = w - w.mean()
    norm = float(np.linalg.norm(w))
    return w / norm if norm > 0 else w
