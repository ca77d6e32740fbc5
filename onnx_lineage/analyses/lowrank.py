"""Whether B's difference from A is low-rank: a low-rank adapter (LoRA and its kin) merged into
A's weights.

A model fine-tuned through a rank-``r`` adapter and merged holds ``W_B = W_A + U V`` in every
adapted weight matrix: the difference has rank ``r``, to the rounding of the stored values. A
full fine-tune moves every direction (full rank); a re-export or a quantized copy differs only by
rounding.

Per matched weight matrix (dense and linear layers, convolutions as ``(out, in * kh * kw)``,
embeddings) of the same shape in both, with B in A's unit order, the rank of
``D = W_B - W_A`` is the number of its singular values above what rounding can give:

* B is taken permuted only: the per-unit rescaling that alignment applies to B
  (:func:`~onnx_lineage.matching.permutation.align_units`) is undone, since a scale on B's rows
  adds ``(s - 1) W_A``, a term of full rank. For the same reason a layer found of full rank
  whose units B holds at other norms than A's by more than :data:`RESCALED` at the median unit
  (a rescaling obfuscation, or a change of norm too large to be told from one) is not read: its
  rank is not given, unless B at A's unit norms (alignment's scale kept) differs from A by
  rounding or by a low rank (a scale can only add rank: what is low with it is low).
* Each value may differ by its tolerance ``t_ij``: the coarser float format's relative rounding of
  ``max(|a|, |b|)`` and half the two quantization steps (the same-values test's,
  :mod:`onnx_lineage.evidence.same_values`). A rounding matrix has spectral norm at most its
  Frobenius norm, at most ``sqrt(sum t_ij^2)``, itself at most ``relative * sqrt(||A||_F^2 +
  ||B||_F^2) + step * sqrt(mn)`` (what is computed: two dot products, not a pass over every
  value): no singular value above that bound is rounding, so the rank counts only what rounding
  cannot explain (a weak adapter direction below the bound is missed, never invented).
* Units B zeroed (pruned) leave the rows and columns compared.

A layer is low-rank when its rank is at least 1 and at most half its smaller side; B is an
adapter of A when every weight matrix that changed is low-rank. Ranks are found exactly up to
:data:`MAX_RANK`: a matrix whose sides both exceed :data:`SKETCH_ABOVE` is first sketched onto
``MAX_RANK + OVERSAMPLE`` random directions (Halko, Martinsson and Tropp's range finder, seeded
with a fixed seed: the result does not move with ``--seed``), and a difference that fills the
sketch is of full rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from onnx_lineage.evidence.same_values import RELATIVE
from onnx_lineage.matching.permutation import permute_units
from onnx_lineage.model.weights import release_pages

#: Largest rank told apart from full rank in a sketched matrix.
MAX_RANK = 128
#: Directions sketched beyond MAX_RANK (the range finder's oversampling).
OVERSAMPLE = 16
#: Matrices with both sides above this are sketched; smaller ones get a full SVD.
SKETCH_ABOVE = 2 * (MAX_RANK + OVERSAMPLE)
#: A junction whose alignment changed the norm of the median unit by more than this share leaves
#: its layers unread where they read as full rank (module docstring).
RESCALED = 0.1
#: Layer kinds whose weight is a matrix of incoming features (convolutions flattened).
MATRIX_KINDS = ("dense", "linear", "conv", "embedding")


@dataclass(frozen=True)
class LayerRank:
    """The difference of one weight matrix.

    Attributes
    ----------
    a, b : int
        A's and B's layer index.
    shape : list of int
        The matrix compared, ``(rows, columns)`` after pruned units are left out.
    rank : int or None
        Singular values of ``W_B - W_A`` above the rounding bound; None: more than
        :data:`MAX_RANK` (a sketched matrix the difference fills).
    change : float
        ``||W_B - W_A||_F / ||W_A||_F``.
    unread : str
        Why the rank was not read (``rank`` is then None), else empty.
    """

    a: int
    b: int
    shape: list
    rank: int | None
    change: float
    unread: str = ""

    @property
    def changed(self) -> bool:
        """Whether the difference is more than rounding (read layers only)."""
        return not self.unread and (self.rank is None or self.rank > 0)

    @property
    def low(self) -> bool:
        """Changed, at rank at most half the smaller side."""
        return self.rank is not None and 0 < self.rank <= min(self.shape) // 2


@dataclass(frozen=True)
class Difference:
    """B - A over the weight matrices both hold (see the module docstring).

    Attributes
    ----------
    layers : list of LayerRank
    adapter : bool
        Every weight matrix that changed is low-rank (and at least one changed).
    rank : int or None
        The adapter's rank, the largest over its layers (None unless ``adapter``).
    statement : str
    """

    layers: list = field(default_factory=list)
    adapter: bool = False
    rank: int | None = None
    statement: str = ""

    def to_dict(self) -> dict:
        """The JSON's ``difference``."""
        return {"adapter": self.adapter, "rank": self.rank, "statement": self.statement,
                "layers": [{"a": x.a, "b": x.b, "shape": x.shape, "rank": x.rank,
                            "low_rank": x.low, "change": x.change, "unread": x.unread}
                           for x in self.layers]}


def difference(m) -> Difference:
    """B - A over the weight matrices of a match ``m`` (:class:`~onnx_lineage.matching.MatchResult`,
    made with ``permutations``), layer by layer."""
    corr = m.correspondence
    b_params, rescaled = permuted_only(m)
    by_index = {x.index: x for x in corr.a_layers}
    b_by = {x.index: x for x in corr.b_layers}
    rows = []
    for pair in m.pairs:
        la, lb = by_index.get(pair["a"]), b_by.get(pair["b"])
        if la is None or lb is None or la.kind not in MATRIX_KINDS or la.groups != 1:
            continue
        wa = corr.a_params.get(la.index, {}).get("weight")
        wb = b_params.get(lb.index, {}).get("weight")
        if wa is None or wb is None or wa.shape != wb.shape or wa.ndim < 2:
            continue
        row = _layer(la, lb, wa, wb)
        release_pages()  # the layer's file pages read: not held while the next is
        if lb.index in rescaled and row.changed and not row.low:  # a scale mixed in?
            scaled = _layer(la, lb, wa, corr.b_aligned[la.index]["weight"])
            row = scaled if not scaled.changed or scaled.low else LayerRank(
                row.a, row.b, row.shape, None, row.change, unread="units rescaled")
        rows.append(row)
    return _summary(rows)


def permuted_only(m) -> tuple[dict, set]:
    """B's aligned parameters by B's layer index, each junction's per-unit scale undone (the
    units keep A's order); and B's layers on either side of a junction whose units alignment
    rescaled by more than :data:`RESCALED`."""
    corr = m.correspondence
    b_of = {p["a"]: p["b"] for p in m.pairs}
    params = {b_of[ai]: dict(v) for ai, v in corr.b_aligned.items() if ai in b_of}
    rescaled = set()
    for c in corr.chains:
        unit = corr.units.get(c.b)
        followers = tuple(fb for _, fb in c.followers)
        if (unit is None or unit.scale is None
                or any(x not in params for x in (c.b, c.b_next) + followers)):
            continue
        if np.median(np.abs(unit.scale - 1.0)) > RESCALED:
            rescaled |= {c.b, c.b_next}
        permute_units(params, np.arange(unit.scale.size), (c.b,), (c.reader,), followers,
                      scale=1.0 / unit.scale, next_groups=c.next_groups)
    return params, rescaled


def _layer(la, lb, wa: np.ndarray, wb: np.ndarray) -> LayerRank:
    """The rank of one weight matrix's difference, B's zeroed units left out (float32 throughout:
    the difference of two float32 values near each other is exact)."""
    a = np.asarray(wa, np.float32).reshape(wa.shape[0], -1)
    b = np.asarray(wb, np.float32).reshape(wb.shape[0], -1)
    rows = np.any(b != 0, axis=1) | ~np.any(a != 0, axis=1)
    cols = np.any(b != 0, axis=0) | ~np.any(a != 0, axis=0)
    if not rows.all() or not cols.all():
        a, b = a[rows][:, cols], b[rows][:, cols]
    d = b - a
    relative = max(RELATIVE.get(la.quant, RELATIVE[None]), RELATIVE.get(lb.quant, RELATIVE[None]))
    # ||relative * max(|a|, |b|) + step||_F <= relative * sqrt(||a||^2 + ||b||^2) + step * sqrt(n)
    sq_a, sq_b, sq_d = (_squares(x) for x in (a, b, d))
    bound = relative * math.sqrt(sq_a + sq_b) + 0.5 * (la.step + lb.step) * math.sqrt(a.size)
    change = math.sqrt(sq_d / sq_a) if sq_a > 0 else float(sq_d > 0)  # ||b - a||_F / ||a||_F
    return LayerRank(la.index, lb.index, list(d.shape), rank_above(d, bound), change)


def _squares(x: np.ndarray) -> float:
    """The sum of ``x``'s squared values, read in its memory order (a weight read transposed is
    not copied)."""
    flat = x.ravel(order="K")
    return float(np.dot(flat, flat))


def rank_above(d: np.ndarray, bound: float) -> int | None:
    """How many singular values of ``d`` (m, n) exceed ``bound``; None when a sketched matrix
    has more than :data:`MAX_RANK` of them (module docstring)."""
    if not np.any(d):
        return 0
    if min(d.shape) <= SKETCH_ABOVE:
        return int(np.sum(np.linalg.svd(d, compute_uv=False) > bound))
    k = MAX_RANK + OVERSAMPLE
    omega = np.random.default_rng(0).standard_normal((d.shape[1], k)).astype(d.dtype)
    q, _ = np.linalg.qr(d @ omega)
    s = np.linalg.svd(q.T @ d, compute_uv=False)  # at most d's: a lower bound on each
    rank = int(np.sum(s > bound))
    return None if rank > MAX_RANK else rank


def _summary(layers: list) -> Difference:
    """The model's difference from its layers' (module docstring), with its sentence."""
    if not layers:
        return Difference(layers, statement="no weight matrix of A has a counterpart of its "
                                            "shape in B")
    changed = [x for x in layers if x.changed]
    low = [x for x in changed if x.low]
    unread = [str(x.a) for x in layers if x.unread]
    if unread and len(unread) == len(layers):
        return Difference(layers, statement=(
            f"B holds the units of A's {len(layers)} weight matrices at other norms than A's "
            "(rescaled): their ranks cannot be read"))
    if unread:  # said first: the sentence below is about the layers read
        done = _summary([x for x in layers if not x.unread])
        return Difference(layers, done.adapter, done.rank, statement=(
            f"layer(s) {', '.join(unread)} not read (B holds their units at other norms than "
            f"A's: rescaled); of the others, {done.statement}"))
    if not changed:
        return Difference(layers, statement=(
            f"B holds A's {len(layers)} weight matrices to their rounding, once in A's unit order "
            "(no change beyond it)"))
    ranks = ", ".join(f"{x.a}: {x.rank}" for x in low)
    if len(low) == len(changed):
        rank = max(x.rank for x in low)
        return Difference(layers, True, rank, statement=(
            f"B - A is low-rank in every weight matrix that changed ({len(changed)} of "
            f"{len(layers)}): a low-rank adapter merged into A's weights, rank {rank} (by A's "
            f"layer: {ranks})"))
    if low:
        full = ", ".join(str(x.a) for x in changed if not x.low)
        return Difference(layers, statement=(
            f"B - A is low-rank in {len(low)} of the {len(changed)} weight matrices that changed "
            f"(by A's layer: {ranks}) and of full rank in layer(s) {full}: an adapter there, "
            "trained in full elsewhere"))
    return Difference(layers, statement=(
        f"B - A is of full rank in the {len(changed)} weight matrices that changed: not a merged "
        "adapter (a full fine-tune, noise, or another model)"))
