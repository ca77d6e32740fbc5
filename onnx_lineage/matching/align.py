"""Sequence alignment of two canonical layer lists, by kind and shape, never by name.

An order-preserving alignment (longest common subsequence with compatibility) tolerates a new
head, layers added or removed, and unmatched tails. Names only break ties between alignments of
equal size.
"""

from __future__ import annotations

import numpy as np

from onnx_lineage.model.parameters import Layer

#: Kinds that may be matched with each other (a LinearClassifier is a dense layer).
_FAMILY = {"dense": "dense", "linear": "dense", "conv": "conv", "conv_transpose": "conv_transpose",
           "batchnorm": "batchnorm", "layernorm": "layernorm", "embedding": "embedding",
           "lstm": "lstm", "gru": "gru", "rnn": "rnn"}


def compatible(a: Layer, b: Layer) -> bool:
    """Same layer family and the same shape of every parameter they both hold."""
    if _FAMILY.get(a.kind) != _FAMILY.get(b.kind) or a.groups != b.groups:
        return False
    for key in set(a.params) & set(b.params):
        if a.params[key].shape != b.params[key].shape:
            return False
    return "weight" in a.params and "weight" in b.params


def align(a: list[Layer], b: list[Layer]) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of positions in ``a`` and ``b``, increasing in both, as many as possible.

    Parameters
    ----------
    a, b : list of Layer

    Returns
    -------
    list of (int, int)
    """
    n, m = len(a), len(b)
    score = np.zeros((n + 1, m + 1))
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best = max(score[i + 1, j], score[i, j + 1])
            if compatible(a[i], b[j]):
                bonus = 1e-3 if a[i].node == b[j].node else 0.0
                best = max(best, 1.0 + bonus + score[i + 1, j + 1])
            score[i, j] = best
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if compatible(a[i], b[j]):
            bonus = 1e-3 if a[i].node == b[j].node else 0.0
            if np.isclose(score[i, j], 1.0 + bonus + score[i + 1, j + 1]):
                pairs.append((i, j))
                i, j = i + 1, j + 1
                continue
        if np.isclose(score[i, j], score[i + 1, j]):
            i += 1
        else:
            j += 1
    return pairs
