"""Undoing a rotation of a residual stream (SliceGPT, QuaRot).

Such a disguise multiplies B's stream by a random orthogonal ``R`` of shape ``(width, width)``:
every weight writing the stream becomes ``R W`` (its bias ``R b``), every weight reading it
``W R^T`` -- the same function where nothing else on the stream tells its coordinates apart
(:mod:`onnx_lineage.model.rotatable` says where: no LayerNorm, no gain per unit). Per-unit
comparisons then see unrelated coordinates, and no permutation undoes it.

Estimate. Only the stream's members whose *other* axis is fixed are read: writers whose inputs
no symmetry class permutes (the token embedding: its columns are the vocabulary; a first dense
layer on the model's input) and readers whose outputs none does (a head on fixed classes). Each
gives a matrix of shape ``(width, n_k)`` with the stream on its rows (a writer's rows and bias, a
reader's weight transposed), divided by the Frobenius norm of A's. Stacked side by side they give
``X_A`` and ``X_B`` of shape ``(width, n)`` with ``X_B = R X_A`` for a rotated copy. Where the
members hold more than :data:`SAMPLED_COLUMNS_PER_UNIT` columns per unit, every ``k``-th column
of each is read (the same columns of both models, fixed: no draw), ``k`` the smallest that keeps
``n`` within that many per unit (a 1.1B decoder's stream of width 2,048 holds 165,376 such
columns: every 11th).
``R = U V^T`` from the SVD ``X_B X_A^T = U S V^T`` minimises ``||X_B - R X_A||_F`` over all
orthogonal matrices (orthogonal Procrustes). Because no permutable axis enters, ``R`` depends on
nothing that B's hidden units' order could change: the classes matched afterwards keep their null
(every matching uniformly random for an independent B), whether or not a rotation is accepted.

Criterion. With ``c(Q) = <X_B, Q X_A> / (||X_A|| ||X_B||)``, the mismatch left by ``Q`` is
``e(Q) = 1 - c(Q)`` (``||X_B - Q X_A||^2 / (2 ||X_A||^2)`` when the norms agree). The rotation
is accepted only when

* ``n >= 2 width`` (a rotation has ``width (width - 1) / 2`` free values: with fewer columns it
  fits anything), and
* ``e(R) <= e(P) / MARGIN``, ``P`` the best signed permutation (identity included; Hungarian
  assignment on ``|X_B X_A^T|``): the rotation must leave less than ``1 / MARGIN`` of the
  mismatch that undoing a permutation leaves (residual norms in a ratio of 4 or more), and
* ``c(R) >= MIN_COSINE``, and
* ``e(P) > ROUNDING``: a permuted or plain copy is explained by ``P`` to rounding already
  (both mismatches then are noise): never rotated.
 On
independent pairs (Gaussian matrices of the stream's shape, and independently initialised RMS
residual models, ``tests/matching/test_stream_rotation.py``) ``e(P) / e(R)`` stays below 3 at
``n >= 2 width``; a rotated copy gives ``e(R)`` at float rounding, a rotated fine-tune with 5%
noise about ``1e-3`` against ``e(P)`` near 0.8. The criterion assumes that the fixed axis does not
make independent models' weights nearly a rotation of each other; models trained on the same data
with the same vocabulary share structure there (model stitching), which these measurements do not
cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx_lineage.matching.permutation import best_assignment
from onnx_lineage.model.streams import Stream

#: The rotation must leave at most this share of the mismatch the best signed permutation leaves.
MARGIN = 16.0
#: Smallest fit cosine ``c(R)`` accepted.
MIN_COSINE = 0.9
#: A signed permutation that leaves less mismatch than this explains B to rounding (a permuted
#: or plain copy, float16 included): no rotation is claimed.
ROUNDING = 1e-6
#: Columns needed per stream unit.
COLUMNS_PER_UNIT = 2
#: Most columns read per stream unit: beyond this, evenly spaced columns of each member (every
#: ``k``-th token of an embedding) are read, as many as this allows. The cross-covariance costs
#: ``width^2`` per column (a 1.1B decoder's fixed members: 1.4 TFLOP in float64), and
#: four times the columns the criterion needs leaves it where it was measured.
SAMPLED_COLUMNS_PER_UNIT = 8


@dataclass(frozen=True)
class StreamRotation:
    """The fit of one stream of B to A's coordinates by an orthogonal matrix.

    Attributes
    ----------
    width : int
        Units of the stream.
    rotation : ndarray of shape (width, width), float64
        ``R``: B's stream is ``R`` times A's (orthogonal).
    members : tuple of int
        B's layers of the stream (rotated back where ``accepted``).
    read : tuple of int
        A's members the fit read (their other axis fixed).
    columns : int
        ``n``, the columns of ``X_A`` read (evenly spaced ones where the members hold more than
        :data:`SAMPLED_COLUMNS_PER_UNIT` per unit).
    fit : float
        ``c(R)``.
    permutation : float
        ``c(P)``, the best signed permutation's.
    accepted : bool
    reason : str
        Why not accepted (empty when it is).
    """

    width: int
    rotation: np.ndarray
    members: tuple
    read: tuple
    columns: int
    fit: float
    permutation: float
    accepted: bool
    reason: str = ""

    @property
    def ratio(self) -> float:
        """``e(P) / e(R)``: how many times less mismatch the rotation leaves."""
        return float((1 - self.permutation) / max(1 - self.fit, 1e-12))


def procrustes(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The orthogonal ``R`` minimising ``||xb - R xa||_F``, its cosine ``c(R)`` and the best
    signed permutation's ``c(P)`` (see the module docstring).

    Parameters
    ----------
    xa, xb : ndarray of shape (width, n)

    Returns
    -------
    rotation : ndarray of shape (width, width), float64
    fit, permutation : float
    """
    xa, xb = np.asarray(xa, np.float64), np.asarray(xb, np.float64)
    norm = float(np.linalg.norm(xa) * np.linalg.norm(xb))
    return from_cross(xb @ xa.T, norm)


def from_cross(cross: np.ndarray, norm: float) -> tuple[np.ndarray, float, float]:
    """:func:`procrustes` from ``cross = xb @ xa.T`` (width, width), B's unit i against A's
    unit j, and ``norm = ||xa|| ||xb||``."""
    u, s, vt = np.linalg.svd(cross)
    perm = best_assignment(np.abs(cross).T)  # A's unit j -> B's unit perm[j]
    signed = float(np.sum(np.abs(cross[perm, np.arange(cross.shape[0])])))
    if norm == 0:
        return np.eye(cross.shape[0]), 0.0, 0.0
    return u @ vt, float(np.sum(s) / norm), signed / norm


def fixed_members(sa: Stream, k: int, classes: list) -> tuple:
    """A's members of stream ``sa`` (the ``k``-th paired stream) whose other axis no other
    symmetry class permutes: writers that no class reads into, readers whose rows are no
    class's, in member order."""
    rows = {r for c in classes if c.stream != k for r in c.rows}
    columns = {x.layer for c in classes if c.stream != k for x in c.columns}
    return (tuple(i for i in sa.writers if i not in columns)
            + tuple(i for i in sa.readers if i not in rows))


def stream_matrix(params: dict, role: str) -> list[np.ndarray]:
    """One member's weights with the stream on the rows, as blocks of shape (width, n_k) in their
    stored type (no copy where the weight allows): a writer's rows and its bias, a reader's
    weight transposed."""
    w = np.asarray(params["weight"])
    if role == "readers":
        return [w.reshape(w.shape[0], -1).T]
    blocks = [w.reshape(w.shape[0], -1)]
    if "bias" in params:
        blocks.append(np.asarray(params["bias"])[:, None])
    return blocks


#: Columns of a stream block multiplied at a time (float64 copies of this many columns only).
CHUNK = 2048


def _accumulate(cross: np.ndarray, a: np.ndarray, b: np.ndarray, scale: float) -> tuple:
    """``cross += (b / scale) @ (a / scale).T`` over column chunks of blocks (width, n) in
    float64, in place; ``(||a||^2, ||b||^2)`` over ``scale^2``."""
    na = nb = 0.0
    for c in range(0, a.shape[1], CHUNK):
        x = np.asarray(a[:, c:c + CHUNK], np.float64) / scale
        y = np.asarray(b[:, c:c + CHUNK], np.float64) / scale
        cross += y @ x.T
        na, nb = na + float(np.sum(x * x)), nb + float(np.sum(y * y))
    return na, nb


def fit_rotation(sa: Stream, b_of: dict, a_params: dict, b_params: dict, read: tuple
                 ) -> StreamRotation:
    """Fit B's stream (paired with A's ``sa``) to A's coordinates over the members ``read``
    (:func:`fixed_members`), and judge the fit (the module docstring's criterion).

    Parameters
    ----------
    a_params, b_params : dict of layer index to dict of str to ndarray
        A's parameters by A's index, B's by B's (canonical; read only).
    """
    members = tuple(b_of[i] for i in sa.members)
    sizes = [x.shape[1] for i in read
             for x in stream_matrix(a_params[i], "writers" if i in sa.writers else "readers")]
    step = max(1, -(-sum(sizes) // (SAMPLED_COLUMNS_PER_UNIT * sa.width)))  # every step-th read
    n = sum(-(-size // step) for size in sizes)
    if n < COLUMNS_PER_UNIT * sa.width:
        return StreamRotation(sa.width, np.eye(sa.width), members, read, n, fit=0.0,
                              permutation=0.0, accepted=False,
                              reason=f"{n} fixed columns, fewer than {COLUMNS_PER_UNIT} per unit")
    # the cross-covariance a block and a chunk at a time: no float64 copy of the stream's members
    # (an embedding and a head of 32,000 tokens are 1 GB each in float64)
    cross, norm_a, norm_b = np.zeros((sa.width, sa.width)), 0.0, 0.0
    for i in read:
        role = "writers" if i in sa.writers else "readers"
        scale = float(np.linalg.norm(a_params[i]["weight"])) or 1.0
        for a, b in zip(stream_matrix(a_params[i], role), stream_matrix(b_params[b_of[i]], role)):
            na, nb = _accumulate(cross, a[:, ::step], b[:, ::step], scale)
            norm_a, norm_b = norm_a + na, norm_b + nb
    r, fit, perm = from_cross(cross, float(np.sqrt(norm_a) * np.sqrt(norm_b)))
    reason = judge(fit, perm)
    return StreamRotation(sa.width, r, members, read, n, fit=fit, permutation=perm,
                          accepted=not reason, reason=reason)


def judge(fit: float, permutation: float) -> str:
    """Why a rotation of fit cosine ``fit`` is not accepted against the best signed permutation's
    ``permutation`` (the module docstring's criterion, columns aside); empty when it is."""
    e_rot, e_perm = 1 - fit, 1 - permutation
    if e_perm <= ROUNDING:
        return "a signed permutation explains B to rounding"
    if e_rot * MARGIN > e_perm or fit < MIN_COSINE:
        return (f"the rotation leaves {e_perm / max(e_rot, 1e-12):.1f} times less mismatch than "
                f"a signed permutation (needs {MARGIN:g}), fit cosine {fit:.3f}")
    return ""


def rotate_back(sa: Stream, b_of: dict, b_params: dict, r: np.ndarray) -> None:
    """Put B's stream paired with A's ``sa`` in A's coordinates, in place on ``b_params`` (new
    arrays, float32): writers ``R^T W`` and ``R^T b``, readers ``W R``; its normalisations (one
    value for every unit) stay as they are."""
    for i in sa.writers:
        p = b_params[b_of[i]]
        w = np.asarray(p["weight"], np.float64)
        p["weight"] = (r.T @ w.reshape(w.shape[0], -1)).reshape(w.shape).astype(np.float32)
        if "bias" in p:
            p["bias"] = (r.T @ np.asarray(p["bias"], np.float64)).astype(np.float32)
    for i in sa.readers:
        p = b_params[b_of[i]]
        p["weight"] = (np.asarray(p["weight"], np.float64) @ r).astype(np.float32)
