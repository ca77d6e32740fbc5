"""Labels for every model: class predictions, or labels derived from A's outputs.

Models without classes get labels derived the same way for A and B, so that decision boundaries
exist: embeddings by the nearest of k prototypes (k-means on A's outputs over the data), regression
outputs by quantile bins of A's outputs.
"""

from __future__ import annotations

import numpy as np

from onnx_lineage.model.runner import Prediction


class Labeler:
    """Turns a :class:`Prediction` into integer labels, consistently for A and B.

    Parameters
    ----------
    kind : str
        A's output kind.
    reference : Prediction
        A's prediction on the data (used to fit prototypes or bins).
    rng : numpy Generator
    k : int
        Prototypes (embeddings) or bins (regression).
    """

    def __init__(self, kind: str, reference: Prediction, rng: np.random.Generator, k: int = 8):
        self.kind = kind
        self.prototypes = None
        self.edges = None
        if kind == "embedding":
            self.prototypes = _kmeans(reference.scores, k, rng)
        elif kind == "regression":
            v = reference.scores[:, 0]
            self.edges = np.unique(np.quantile(v, np.linspace(0, 1, k + 1)[1:-1]))

    @property
    def derived(self) -> str | None:
        """How labels are derived, or None for class outputs."""
        if self.prototypes is not None:
            return f"nearest of {len(self.prototypes)} prototypes of A's embeddings"
        if self.edges is not None:
            return f"{len(self.edges) + 1} quantile bins of A's outputs"
        return None

    def __call__(self, pred: Prediction) -> np.ndarray:
        if self.prototypes is not None:
            s = pred.scores
            if s.shape[1] != self.prototypes.shape[1]:
                return np.full(len(s), -1, np.int64)
            d = ((s[:, None, :] - self.prototypes[None]) ** 2).sum(-1)
            return np.argmin(d, axis=1).astype(np.int64)
        if self.edges is not None:
            return np.searchsorted(self.edges, pred.scores[:, 0]).astype(np.int64)
        return pred.labels


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 25) -> np.ndarray:
    """Plain k-means (k-means++ start), returns (k, d) centres."""
    k = min(k, len(x))
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        p = d / d.sum() if d.sum() > 0 else None
        centres.append(x[rng.choice(len(x), p=p)])
    c = np.asarray(centres, dtype=np.float64)
    for _ in range(iters):
        lab = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            if np.any(lab == j):
                c[j] = x[lab == j].mean(0)
    return c.astype(np.float32)
