"""Child or sibling: does one model carry another's own displacement?

Three related models ``q``, ``p``, ``c`` in one unit order (``p`` and ``c`` aligned to ``q``).
If ``c`` was trained from ``p`` (``q -> p -> c``), its displacement from ``q`` holds all of
``p``'s: ``c - q = (p - q) + (c - p)``. If ``p`` and ``c`` were both trained from ``q``
(siblings), their displacements are independent but for what their trainings shared. Distances
alone cannot tell these apart when siblings were trained alike (they sit closer to each other
than to their parent) or when a grandchild trained back towards its grandparent's task (it sits
closer to its grandparent than to its parent).

What two trainings from one model share (the same task's pull, the optimiser's drift along the
same gradients) is concentrated in a few directions of every weight matrix; what is particular
to one run (its minibatches, its data order, its own task) is spread over all of them. So per
layer, with the top singular directions of ``(p - q) + (c - q)`` taken out of both, the share of
``p``'s remaining displacement that ``c`` carries,

    share = <P', C'> / |P'|^2   (summed over the weight matrices),

is near 1 for a child of ``p`` (less where its training undid some of ``p``'s) and near 0 for a
sibling (more where their runs were alike): the tree reads ``share >= 0.5``, the midpoint of the
two, as "``c`` descends from ``p``".
"""

from __future__ import annotations

import numpy as np

#: Shared directions taken out of each weight matrix: at most this many ...
SHARED_RANK = 8
#: ... and at most this fraction of the matrix's smaller side (a 3x3 convolution's 9 inputs keep
#: most of their directions).
SHARED_FRACTION = 0.25
#: Above this many columns (and rows), the shared directions are found by randomized subspace
#: iteration instead of a full SVD.
EXACT_SVD_BELOW = 512
#: ``c`` descends from ``p`` from this share up.
CHILD_SHARE = 0.5


def _matrices(q: dict, p: dict, c: dict):
    """Per matched weight matrix of at least 2 dimensions: (Q, P - Q, C - Q) as float64 (out, -1)."""
    for k, qa in q.items():
        w = qa.get("weight")
        if w is None or np.ndim(w) < 2 or k not in p or k not in c:
            continue
        pw, cw = p[k].get("weight"), c[k].get("weight")
        if pw is None or cw is None or np.shape(pw) != np.shape(w) or np.shape(cw) != np.shape(w):
            continue
        w64 = np.asarray(w, np.float64).reshape(np.shape(w)[0], -1)
        yield (w64, np.asarray(pw, np.float64).reshape(w64.shape) - w64,
               np.asarray(cw, np.float64).reshape(w64.shape) - w64)


def _top_subspaces(m: np.ndarray, k: int, rng: np.random.Generator):
    """Top ``k`` left and right singular vectors of ``m`` (n, d): (n, k), (d, k)."""
    if min(m.shape) < EXACT_SVD_BELOW:
        u, _, vt = np.linalg.svd(m, full_matrices=False)
        return u[:, :k], vt[:k].T
    y = m @ rng.standard_normal((m.shape[1], k + 8))  # range finder, two power iterations
    for _ in range(2):
        y = m @ (m.T @ np.linalg.qr(y)[0])
    q, _ = np.linalg.qr(y)
    u, _, vt = np.linalg.svd(q.T @ m, full_matrices=False)
    return (q @ u)[:, :k], vt[:k].T


def _without(m: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(I - u u^T) m (I - v v^T)``."""
    m = m - u @ (u.T @ m)
    return m - (m @ v) @ v.T


def displacement_share(q: dict, p: dict, c: dict, seed: int = 0,
                       shared_rank: int = SHARED_RANK) -> float | None:
    """The share of ``p``'s own displacement from ``q`` that ``c`` carries (see the module
    docstring): about 1 if ``c`` descends from ``p``, about 0 if they are siblings.

    Parameters
    ----------
    q, p, c : dict of layer index to dict of str to ndarray
        Parameters of the three models, ``p``'s and ``c``'s aligned to ``q``'s units
        (``MatchResult.a_params`` of ``q`` and ``b_aligned`` of each); only weight matrices of
        the same shape in all three are read.
    seed : int
        Seed of the randomized subspace iteration (layers of :data:`EXACT_SVD_BELOW` and more).
    shared_rank : int
        Shared directions taken out per matrix, at most (0: the plain projection).

    Returns
    -------
    float, or None when ``p``'s remaining displacement is next to nothing (``p`` a copy of ``q``)
    or no weight matrix is shared.
    """
    rng = np.random.default_rng(seed)
    carried = own = scale = 0.0
    for w, dp, dc in _matrices(q, p, c):
        k = min(shared_rank, int(SHARED_FRACTION * min(w.shape)))
        if k >= 1:
            u, v = _top_subspaces(dp + dc, k, rng)
            dp, dc = _without(dp, u, v), _without(dc, u, v)
        carried += float(np.sum(dp * dc))
        own += float(np.sum(dp * dp))
        scale += float(np.sum(w * w))
    if own <= 1e-12 * scale or scale == 0.0:
        return None
    return carried / own


def evidence(q: str, p: str, c: str, share: float) -> str:
    """The sentence for an edge ``p -> c`` whose parent ``p`` descends from ``q``."""
    verdict = f"a child of {p}" if share >= CHILD_SHARE else f"read as {p}'s sibling"
    return (f"{c} carries {share:.2f} of {p}'s own change from {q} (a child carries about 1, "
            f"more if it went on the same way; a sibling about 0): {verdict}")
