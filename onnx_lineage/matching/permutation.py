"""Undoing function-preserving obfuscation: hidden-unit permutation and positive rescaling.

For a chain ``layer -> (activation, BatchNorm, Flatten, ...) -> next layer``, permuting the output
units of ``layer`` (rows of its weight, its bias, the per-unit parameters of BatchNorm/LayerNorm on
the way) together with the matching inputs of ``next`` leaves the network's function unchanged;
so does scaling unit ``k``'s incoming weights and bias by ``s > 0`` and its outgoing weights by
``1/s`` when every op on the way is positively homogeneous (ReLU, max-pool, ...).

:func:`align_units` finds, for every such chain, the permutation of B's units that best matches A's
(Hungarian assignment on the cosine similarity of incoming plus outgoing weights, iterated over the
layers as in weight matching / Git Re-Basin), then gives each of B's units the incoming norm of its
A counterpart. Cosine similarity is scale-invariant, so the assignment sees through rescaling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from onnx_lineage.memory import plain_empty, spilled_empty
from onnx_lineage.model.parameters import as_single, kept
from onnx_lineage.model.weights import release_pages

_EPS = 1e-12


class Reader(NamedTuple):
    """A layer whose inputs carry a unit axis.

    Attributes
    ----------
    layer : int
    spatial : int
        Inputs per unit (a flattened map).
    channels_last : bool
        In channels-last order (column ``s * units + u``; a recurrent layer's ``W``: its last
        axis).
    span : tuple of (int, int), or ()
        The units are its input channels ``span[0]:span[1]`` (one block of a ``Concat``); ``()``:
        as many as the axis has (or the class's own span, one attention head).
    """

    layer: int
    spatial: int = 1
    channels_last: bool = False
    span: tuple = ()

    def columns(self, w: np.ndarray, span: tuple = ()) -> np.ndarray:
        """The input channels of ``w`` (out, in, ...) that carry the units (this reader's span,
        else ``span``)."""
        cut = self.span or span
        return w if not cut else w[:, cut[0]:cut[1]]


@dataclass
class Chain:
    """One permutable junction, in A's and B's layer indices.

    Attributes
    ----------
    a, b : int
        The layer whose output units are permuted.
    a_next, b_next : int
        The layer that reads them.
    followers : list of (int, int)
        Matched BatchNorm/LayerNorm layers between them.
    spatial : int
        Inputs of ``next`` per unit.
    homogeneous : bool
        Rescaling is function-preserving (in B).
    channels_last : bool
        A dense ``next`` reads a flattened ``(spatial, units)`` map (column ``s * units + u``, a
        channels-last flatten) instead of ``(units, spatial)`` (column ``u * spatial + s``). Both
        sides' ``next`` weights are in this one layout (B's are converted to A's by ``match``).
    groups : int
        ``layer`` is a grouped convolution: its channels permute only within each of these
        equal blocks.
    next_groups : int
        ``next`` is a grouped convolution with this many groups: the units move in blocks, one
        per group, each block as a whole to another group's place (the group's output channels
        moving with it, when ``next``'s own junction is aligned too) and within itself freely.
    next_span : tuple of (int, int), or ()
        ``next`` reads the units as its input channels ``next_span[0]:next_span[1]``, one block
        of a ``Concat`` (the rest are other layers' units).
    """

    a: int
    b: int
    a_next: int
    b_next: int
    followers: list = field(default_factory=list)
    spatial: int = 1
    homogeneous: bool = True
    channels_last: bool = False
    groups: int = 1
    next_groups: int = 1
    next_span: tuple = ()

    @property
    def reader(self) -> Reader:
        """B's layer that reads the units."""
        return Reader(self.b_next, self.spatial, self.channels_last, self.next_span)


@dataclass
class UnitAlignment:
    """What :func:`align_units` did to one junction (in B's layer index ``b``).

    Attributes
    ----------
    perm : ndarray of shape (units,), int
        The total permutation applied (B's unit ``perm[u]`` became unit ``u``).
    scale : ndarray of shape (units,) or None
        The total per-unit scale applied.
    """

    perm: np.ndarray
    scale: np.ndarray | None

    @property
    def permuted(self) -> bool:
        return bool(np.any(self.perm != np.arange(self.perm.size)))

    @property
    def rescaled(self) -> bool:
        return self.scale is not None and bool(np.any(np.abs(self.scale - 1.0) > 1e-2))


def per_unit(params: dict) -> np.ndarray:
    """A follower's parameters side by side per unit (BatchNorm's four, a depthwise filter and its
    bias), shape (units, features)."""
    keys = [k for k in sorted(params) if k != "eps"]
    units = params[keys[0]].shape[0]
    return np.concatenate([params[k].reshape(units, -1) for k in keys], axis=1)


def _rows(w: np.ndarray) -> np.ndarray:
    return w.reshape(w.shape[0], -1)


def _in_features(params: dict, followers: list[dict]) -> np.ndarray:
    """Per unit: incoming weights and bias, shape (units, fan_in + 1)."""
    w = _rows(params["weight"])
    b = params.get("bias", np.zeros(w.shape[0], np.float32))
    return np.concatenate([w, b[:, None]], axis=1)


def out_features(next_weight: np.ndarray, units: int, spatial: int,
                  channels_last: bool = False, groups: int = 1) -> np.ndarray:
    """Per unit: the weights that read it in the next layer, shape (units, fan_out) (a grouped
    convolution with ``groups`` groups: the filters of the unit's group, ``fan_out`` its
    output channels times the kernel)."""
    w = next_weight
    out = w.shape[0]
    if groups > 1:  # (out, units / groups, k...): unit g * s + k is column k of group g's rows
        per = w.reshape(groups, out // groups, w.shape[1], -1).transpose(0, 2, 1, 3)
        return per.reshape(units, -1)
    if w.ndim == 2 and channels_last:  # dense after a channels-last flatten: unit is the inner axis
        return w.reshape(out, spatial, units).transpose(2, 0, 1).reshape(units, -1)
    if channels_last:  # a recurrent layer's W (dirs, gates * hidden, in)
        return np.moveaxis(w, -1, 0).reshape(units, -1)
    if w.ndim == 2:  # dense: columns grouped by unit (channel-major flatten)
        return w.reshape(out, units, spatial).transpose(1, 0, 2).reshape(units, -1)
    return np.moveaxis(w, 1, 0).reshape(units, -1)  # conv: input channel axis


def to_layout(w: np.ndarray, units: int, spatial: int, channels_last: bool) -> np.ndarray:
    """A dense weight (out, units * spatial) read after a flatten, converted from the other
    flatten order to ``channels_last`` (True: column ``s * units + u``; False: ``u * spatial + s``).
    """
    out = w.shape[0]
    if channels_last:  # from (units, spatial) columns
        return np.ascontiguousarray(w.reshape(out, units, spatial).transpose(0, 2, 1).reshape(out, -1))
    return np.ascontiguousarray(w.reshape(out, spatial, units).transpose(0, 2, 1).reshape(out, -1))


def row_norms(a: np.ndarray) -> np.ndarray:
    """Euclidean length of each row of ``a`` (n, d), float64, without overflow or underflow.

    Reads ``a`` without copying it: float32 sums of squares wherever the rows' largest
    magnitudes keep them in float32's range (every trained weight), the rest scaled by that
    magnitude first.
    """
    a = as_single(a)
    n, d = a.shape
    if d == 0:
        return np.zeros(n)
    peak = np.maximum(a.max(axis=1), -a.min(axis=1)).astype(np.float64)
    norm = np.sqrt(np.einsum("ij,ij->i", a, a).astype(np.float64))
    # a square sum in float32: no overflow below sqrt(1e37 / d), no lost mass above 1e-15
    odd = np.flatnonzero((peak > 0) & ((peak < 1e-15) | (peak * peak * d > 1e37)))
    if odd.size:
        rows = a[odd] / peak[odd, None].astype(np.float32)
        norm[odd] = np.sqrt(np.einsum("ij,ij->i", rows, rows).astype(np.float64)) * peak[odd]
    return norm


def unit_rows(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``a`` (n, d) scaled to unit length, float32 (zero rows stay zero), whatever the
    weights' scale (:func:`row_norms`): into ``out`` (n, d) float32 when given (a slice of a
    larger array), else one new array."""
    a = as_single(a)
    norm = row_norms(a)
    scale = np.where(norm > 0, 1.0 / np.maximum(norm, 1e-300), 0.0)
    out = np.multiply(a, np.minimum(scale, 1e30).astype(np.float32)[:, None], out=out)
    tiny = np.flatnonzero(scale > 1e30)  # rows of subnormal values: scaled in float64
    if tiny.size:
        out[tiny] = (a[tiny].astype(np.float64) * scale[tiny, None]).astype(np.float32)
    return out


def unit_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of every row of ``a`` (n, d) with every row of ``b`` (m, d), shape (n, m), float32."""
    return unit_rows(a) @ unit_rows(b).T


#: A similarity of more multiply-adds than this (units of A x units of B x features), over
#: more than :data:`SKETCH_RATIO` times :data:`SKETCH_DIM` features, is sketched: see
#: :class:`CosineSum`.
SKETCH_ABOVE = 4e9
SKETCH_DIM = 1024
SKETCH_RATIO = 4
#: Rows of similarities computed at once by :meth:`CosineSum.matching` (a BERT-base
#: feed-forward class: 512 x 3072 float32, 6 MB, against 38 MB for all of them).
SLAB_ROWS = 512
#: The leading share of each block's features on which :meth:`CosineSum.matching` first looks
#: for each row's best column (:class:`_Screen`).
SCREEN_SHARE = 0.25


class CosineSum:
    """The sum of :func:`unit_cosine` over feature blocks ``(x (n, d), y (m, d))`` added one at
    a time, shape (n, m).

    Exact (one matrix product of all blocks side by side) unless the work is very large: above
    :data:`SKETCH_ABOVE` multiply-adds with over ``SKETCH_RATIO * SKETCH_DIM`` features in all
    (a BERT-base-sized residual stream: 768 units, 31k features each; a 1B decoder's SwiGLU
    units: 5632 units, 6144 features), each block's unit rows are count-sketched instead: every
    feature added, with a random sign, to one of :data:`SKETCH_DIM` buckets, the same for A and
    B, an unbiased estimate of each cosine with a variance of about ``(1 + cos^2) / SKETCH_DIM``
    per block; the products of the summed sketches stand in for the sum. A unit and its
    counterpart in a derived model stand many standard deviations above the rest, so their
    matching is the exact one's; between unrelated models the matching can only come out worse
    than the exact one (conservative for the tests, as for the sparse assignment). The sketch
    acts on features, never on units, so relabelling B's units relabels the result's columns:
    matchings built on it stay equivariant.

    Parameters
    ----------
    n, m : int
        Units of A and of B.
    features : int
        Total feature length of the blocks to come (decides exact or sketched).
    seed : int
        Seed of the sketch's buckets and signs.
    """

    def __init__(self, n: int, m: int, features: int, seed: int = 0):
        self.sketched = (n * m * features > SKETCH_ABOVE
                         and features > SKETCH_RATIO * SKETCH_DIM)
        self._rng = np.random.default_rng(seed)
        self._n, self._m = n, m
        if self.sketched:
            self._su = np.zeros((n, SKETCH_DIM), np.float32)
            self._sv = np.zeros((m, SKETCH_DIM), np.float32)
        else:  # the blocks' unit rows side by side, written in place: one matrix product
            self._x = np.empty((n, features), np.float32)
            self._y = np.empty((m, features), np.float32)
            self._at = 0
            self._spans: list[tuple[int, int]] = []  # each block's columns

    def add(self, x: np.ndarray, y: np.ndarray, weight: float = 1.0,
            relabel: np.ndarray | None = None) -> None:
        """Add ``weight`` times the cosines of the rows of ``x`` (n, d) with those of ``y``
        (its rows taken in the order ``relabel``, when given)."""
        if self.sketched:
            d = x.shape[1]
            bucket = self._rng.integers(0, SKETCH_DIM, d)
            sign = self._rng.choice(np.array([-weight, weight], np.float32), d)
            self._su += _unit_sketch(x, bucket, sign)
            sketch = _unit_sketch(y, bucket, sign)  # row by row: relabelling after is the same
            self._sv += sketch if relabel is None else sketch[relabel]
            release_pages()  # a block is read once: its mapped pages need not stay resident
            return
        at, d = self._at, x.shape[1]
        if at + d > self._x.shape[1]:  # more features than announced: room made
            grow = at + d - self._x.shape[1]
            self._x = np.concatenate([self._x, np.empty((self._n, grow), np.float32)], axis=1)
            self._y = np.concatenate([self._y, np.empty((self._m, grow), np.float32)], axis=1)
        xr = unit_rows(x, self._x[:, at:at + d])
        unit_rows(y if relabel is None else y[relabel], self._y[:, at:at + d])
        if weight != 1.0:
            xr *= np.float32(weight)
        self._at = at + d
        self._spans.append((at, at + d))
        release_pages()

    def _operands(self) -> tuple[np.ndarray, np.ndarray]:
        """(n, k) and (m, k) whose product is the result: the sketches, or the blocks' unit
        rows side by side."""
        if self.sketched:
            return self._su, self._sv
        return self._x[:, :self._at], self._y[:, :self._at]

    def result(self) -> np.ndarray:
        """The (n, m) similarities, float32: the sketches' product, or the product of all
        blocks' unit rows side by side (the sum of the blocks' products, in one)."""
        x, y = self._operands()
        return x @ y.T

    def matching(self) -> np.ndarray:
        """:func:`best_assignment` of :meth:`result`, without the whole (n, m) matrix where every
        row's best column differs (a derived model's units: the common case).

        Rows are taken :data:`SLAB_ROWS` at a time. Each row's best column is first proven on
        the leading quarter of every block's features, or of the sketch's dimensions where the
        blocks are sketched (:class:`_Screen`: a quarter of the products; the 11,008 SwiGLU
        units of a 7B decoder are sketched); the rows it cannot
        prove, and every row once a whole slab is mostly unproven (unrelated units: the screen
        would not pay), get their similarities computed in full, of which only the argmax is
        kept. The first column that a second row picks brings the whole matrix back, on which
        the assignment is solved as before. Every row's column is the exact similarities'
        argmax: proven, or computed."""
        x, y = self._operands()
        n = x.shape[0]
        if n <= SLAB_ROWS:
            return best_assignment(x @ y.T)
        screen = _Screen(x, y, [(0, x.shape[1])] if self.sketched else self._spans)
        best, taken = np.empty(n, np.int64), np.zeros(y.shape[0], bool)
        for start in range(0, n, SLAB_ROWS):
            stop = min(start + SLAB_ROWS, n)
            slab = cols = None
            if screen is not None:
                cols = screen.best(start, stop)
                if np.mean(cols < 0) > 0.5:  # mostly unproven: unrelated units
                    screen = cols = None
            if cols is None:
                slab = x[start:stop] @ y.T
                cols = np.argmax(slab, axis=1)
            else:
                open_rows = np.flatnonzero(cols < 0)
                if open_rows.size:
                    cols[open_rows] = np.argmax(x[start + open_rows] @ y.T, axis=1)
            if taken[cols].any() or np.unique(cols).size < cols.size:
                full = plain_empty((n, y.shape[0]))
                for lo in range(0, n, SLAB_ROWS):
                    if slab is not None and lo == start:
                        full[start:stop] = slab
                    else:
                        np.matmul(x[lo:lo + SLAB_ROWS], y.T, out=full[lo:lo + SLAB_ROWS])
                return best_assignment(full)
            taken[cols] = True
            best[start:stop] = cols
        return best


class _Screen:
    """Each row's best column of ``x @ y.T``, proven without computing most of the products.

    The leading :data:`SCREEN_SHARE` of every block's features, ``L``, gives each row ``i`` its
    best column ``j`` on them; the full product ``x_i . y_j`` is then computed. Any other column
    ``k`` has ``x_i . y_k <= x_iL . y_kL + sum over blocks of |x_i,rest| |y_k,rest|`` (Cauchy-
    Schwarz on each block's other features), at most the row's second best on ``L`` plus
    ``sum over blocks of |x_i,rest| * max_k |y_k,rest|`` (with one block, sketches, the bound is
    taken column by column instead); where that is below ``x_i . y_j`` (by a
    margin far above float32's rounding) ``j`` is the row's argmax. A unit and its counterpart in
    a derived model agree on every feature: proven. Unrelated units are not, and are left to
    the full product. The features taken are the same for every unit: equivariant.

    Parameters
    ----------
    x, y : ndarray of shape (n, d) and (m, d), float32
        Unit rows side by side, block after block (or the units' sketches: one block).
    spans : list of (int, int)
        Each block's columns.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, spans: list[tuple[int, int]]):
        self._x, self._y = x, y
        lead = [(a, min(b, a + max(1, int(np.ceil((b - a) * SCREEN_SHARE))))) for a, b in spans]
        self._xl = np.concatenate([x[:, a:b] for a, b in lead], axis=1)
        self._yl = np.concatenate([y[:, a:b] for a, b in lead], axis=1)
        self._slack = np.zeros(x.shape[0])  # per row: the bound's second term
        self._rest = None  # one block: per row and column, |x_i,rest| |y_k,rest| (tighter)
        if len(spans) == 1 and spans[0][1] > lead[0][1]:
            rest, end = lead[0][1], spans[0][1]
            self._rest = (row_norms(x[:, rest:end]), row_norms(y[:, rest:end]))
        for (_, rest), (_, end) in zip(lead, spans):
            if end > rest and self._rest is None:
                self._slack += row_norms(x[:, rest:end]) * row_norms(y[:, rest:end]).max()
        # float32 products of d features are off by at most about d * 6e-8 of |x||y|
        self._margin = 1e-3 * max(1.0, float(row_norms(x).max() * row_norms(y).max()))

    def best(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``'s best columns, -1 where not proven, shape (stop - start,)."""
        lead = self._xl[start:stop] @ self._yl.T
        rows = np.arange(stop - start)
        cols = np.argmax(lead, axis=1)
        if self._rest is not None:  # each column's own bound: lead + |x_i,rest| |y_k,rest|
            lead += np.outer(self._rest[0][start:stop], self._rest[1]).astype(lead.dtype)
        lead[rows, cols] = -np.inf
        second = lead.max(axis=1) if lead.shape[1] > 1 else np.full(rows.size, -np.inf)
        exact = np.einsum("ij,ij->i", self._x[start:stop], self._y[cols], dtype=np.float64)
        proven = second + self._slack[start:stop] < exact - self._margin
        return np.where(proven, cols, -1)


def _unit_sketch(x: np.ndarray, bucket: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Count sketch (:func:`kernels.sketch.count_sketch`) of ``x``'s rows scaled to unit length,
    float32: the rows are sketched as they are and the sketch is scaled after, so ``x`` is read
    once and never copied."""
    from kernels.sketch import count_sketch, count_sketch_columns  # numba: only when sketching
    x = as_single(x)
    squares = np.zeros(x.shape[0])
    if not x.flags.c_contiguous and x.T.flags.c_contiguous:  # read transposed: walk its rows
        out = np.zeros((SKETCH_DIM, x.shape[0]))
        count_sketch_columns(x.T, bucket.astype(np.int64), sign, out, squares)
        out = out.T
    else:
        out = np.zeros((x.shape[0], SKETCH_DIM))
        count_sketch(x, bucket.astype(np.int64), sign, out, squares)
    norm = np.sqrt(squares)
    return (out * np.where(norm > 0, 1.0 / np.maximum(norm, 1e-300), 0.0)[:, None]).astype(
        np.float32)


def _summed(blocks: list, weights: list | None, relabel: np.ndarray | None) -> CosineSum:
    total = CosineSum(blocks[0][0].shape[0], blocks[0][1].shape[0],
                      sum(x.shape[1] for x, _ in blocks))
    for k, (x, y) in enumerate(blocks):
        total.add(x, y, 1.0 if weights is None else weights[k], relabel)
    return total


def cosine_sum(blocks: list, weights: list | None = None,
               relabel: np.ndarray | None = None) -> np.ndarray:
    """:class:`CosineSum` of ``blocks`` (pairs ``(x, y)``), each times its weight (default 1),
    ``y``'s rows taken in the order ``relabel`` (when given)."""
    return _summed(blocks, weights, relabel).result()


def best_matching(blocks: list, weights: list | None = None,
                  relabel: np.ndarray | None = None) -> np.ndarray:
    """``best_assignment(cosine_sum(blocks, weights, relabel))``, holding the whole similarity
    matrix only when the rows' best columns collide (:meth:`CosineSum.matching`)."""
    return _summed(blocks, weights, relabel).matching()


def take_rows(w: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """``w[perm]``, kept in ``w``'s memory order: a weight stored ``(in, out)`` and read
    transposed stays transposed in memory, so that the sweep blends it without a strided walk."""
    if _transposed(w):
        return _taken(w.T, perm, 1).T
    return _taken(w, perm, 0)


def take_columns(w: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """``w[:, perm]``, kept in ``w``'s memory order (see :func:`take_rows`; numpy's own
    ``w[:, perm]`` comes out in column order)."""
    if _transposed(w):
        return _taken(w.T, perm, 0).T
    return _taken(w, perm, 1)


def _taken(w: np.ndarray, perm: np.ndarray, axis: int) -> np.ndarray:
    """``np.take(w, perm, axis)`` into :func:`~onnx_lineage.memory.spilled_empty` memory (a
    temporary file's pages from 16 MB, :func:`~onnx_lineage.memory.plain_empty` below): a
    permuted copy of a large weight is written once, whole, and held as the weight it stands for
    was, in pages the kernel may drop. ``perm`` holds matched units, every one in range:
    ``mode="clip"`` then changes nothing but lets numpy write into ``out`` directly, where the
    default mode goes through a buffer of the result's size."""
    shape = list(w.shape)
    shape[axis] = perm.size
    return np.take(w, perm, axis=axis, out=spilled_empty(tuple(shape), w.dtype), mode="clip")


def _transposed(w: np.ndarray) -> bool:
    return w.ndim == 2 and w.flags.f_contiguous and not w.flags.c_contiguous


def permute_inputs(w: np.ndarray, perm: np.ndarray, spatial: int, scale: np.ndarray | None,
                    channels_last: bool = False) -> np.ndarray:
    units = perm.size
    if w.ndim == 2 and channels_last:
        out = w.shape[0]
        blocks = w.reshape(out, spatial, units)[:, :, perm]
        if scale is not None:
            blocks = blocks / scale[None, None, :]
        return kept(blocks.reshape(out, -1))
    if w.ndim == 2 and spatial == 1:
        res = take_columns(w, perm)
        return kept(res if scale is None else res / scale[None, :])
    if w.ndim == 2:
        out = w.shape[0]
        blocks = w.reshape(out, units, spatial)[:, perm, :]
        if scale is not None:
            blocks = blocks / scale[None, :, None]
        return kept(blocks.reshape(out, -1))
    if channels_last:  # a recurrent layer's W (dirs, gates * hidden, in)
        res = w[..., perm]
        return kept(res if scale is None else res / scale)
    res = w[:, perm]
    if scale is not None:
        res = res / scale.reshape((1, -1) + (1,) * (w.ndim - 2))
    return kept(res)


def permute_grouped_inputs(w: np.ndarray, perm: np.ndarray, groups: int,
                           scale: np.ndarray | None = None) -> np.ndarray:
    """A grouped convolution's weight ``(out, units / groups, k...)`` after its input units were
    reordered by a block permutation ``perm`` (units of one block land in one block): each of the
    source groups reads its units in their new order, its output rows still in place (moving them
    is the grouped layer's own junction's part, see :func:`group_moves`); ``scale``, per unit in
    the new order, divides the columns."""
    s = perm.size // groups
    rows = w.shape[0] // groups
    src = perm[::s] // s
    local = perm.reshape(groups, s) - src[:, None] * s
    res = np.array(w, dtype=np.float32)
    for h, g in enumerate(src):
        block = w[g * rows:(g + 1) * rows][:, local[h]]
        if scale is not None:
            block = block / scale[h * s:(h + 1) * s].reshape((1, -1) + (1,) * (w.ndim - 2))
        res[g * rows:(g + 1) * rows] = block
    return res


def group_moves(perm: np.ndarray, groups: int, out: int) -> np.ndarray:
    """The permutation of a grouped convolution's ``out`` output channels that moves each group
    whole to where the block permutation ``perm`` of its inputs put the group's inputs."""
    s, rows = perm.size // groups, out // groups
    src = perm[::s] // s
    return (src[:, None] * rows + np.arange(rows)[None, :]).ravel()


#: Above this many groups, a pair of groups is scored by its rows' best similarities (an upper
#: bound of the assignment's) instead of by solving the assignment for every pair.
EXACT_GROUPS = 32


def block_assignment(sim: np.ndarray, groups: int, movable: bool = True) -> np.ndarray:
    """The best assignment (``perm[u]``: B's unit for A's unit ``u``) that keeps blocks whole:
    the units of A's block ``g`` all go to one block of B, chosen by the total similarity of the
    best assignment between the two blocks (its upper bound above :data:`EXACT_GROUPS` groups),
    and are assigned within it. ``movable=False``: every block stays in its place."""
    s = sim.shape[0] // groups
    blocks = sim.reshape(groups, s, groups, s).transpose(0, 2, 1, 3)  # [g, h]: A's g, B's h
    if not movable:
        sigma = np.arange(groups)
    elif groups > EXACT_GROUPS or s == 1:
        sigma = best_assignment(blocks.max(axis=3).sum(axis=2))
    else:
        score = np.empty((groups, groups))
        for g in range(groups):
            for h in range(groups):
                inner = best_assignment(blocks[g, h])
                score[g, h] = blocks[g, h][np.arange(s), inner].sum()
        sigma = best_assignment(score)
    return np.concatenate([sigma[g] * s + best_assignment(blocks[g, sigma[g]])
                           for g in range(groups)])


def align_units(a_params: dict[int, dict], b_params: dict[int, dict], chains: list[Chain],
                iterations: int = 4, rescale: bool = True,
                given: dict | None = None) -> dict[int, UnitAlignment]:
    """Permute (and rescale) B's hidden units to match A's, in place on ``b_params``.

    Parameters
    ----------
    a_params, b_params : dict of layer index to dict of str to ndarray
        Canonical parameters by layer index (A's and B's own indices). ``b_params`` is modified.
    chains : list of Chain
        Junctions to align, in graph order.
    iterations : int
        Passes over the chains (the outgoing weights of one junction depend on the next one).
        A later pass looks again only at junctions whose layers another junction has rewritten
        since (a transformer's feed-forward junctions, between residual streams, are aligned
        once).
    given : dict of B's layer index to ndarray, optional
        Matchings already found for some junctions from the very similarities their first
        alignment would compare (``perm[u]``: B's unit for A's unit ``u``): taken there instead
        of computing them again; a later pass looks at them like at any other.

    Returns
    -------
    dict of B's layer index to UnitAlignment
        The total permutation and scale applied to each junction.
    """
    done = {c.b: UnitAlignment(np.arange(b_params[c.b]["weight"].shape[0]), None) for c in chains}
    by_b = {c.b: c for c in chains}
    version: dict[int, int] = {}  # B's layer -> how often a junction has rewritten it
    seen: dict[int, tuple] = {}  # junction -> the versions of its layers when last aligned

    def state(c: Chain) -> tuple:
        return tuple(version.get(layer, 0) for layer in _layers(c))

    def moved(c: Chain, perm: np.ndarray) -> None:
        _apply(b_params, c, perm, None)
        for layer in _layers(c):
            version[layer] = version.get(layer, 0) + 1

    for _ in range(iterations):
        changed = False
        for c in chains:
            if seen.get(c.b) == state(c):  # nothing it reads has moved since: the same answer
                continue
            units = b_params[c.b]["weight"].shape[0]
            inner = by_b.get(c.b_next)
            first = c.b not in seen and not any(state(c))
            perm = (given[c.b] if given and c.b in given and first
                    else _junction_matching(a_params, b_params, c, inner is not None))
            if np.any(perm != np.arange(units)):
                changed = True
                moved(c, perm)
                done[c.b].perm = done[c.b].perm[perm]
                if inner is not None and c.next_groups > 1:
                    moves = group_moves(perm, c.next_groups, b_params[c.b_next]["weight"].shape[0])
                    moved(inner, moves)
                    done[inner.b].perm = done[inner.b].perm[moves]
            seen[c.b] = state(c)  # its own move is accounted for
            release_pages()
        if not changed:
            break
    if rescale:
        for c in chains:
            if not c.homogeneous or c.followers:
                continue
            na = np.linalg.norm(_in_features(a_params[c.a], []).astype(np.float64), axis=1)
            nb = np.linalg.norm(_in_features(b_params[c.b], []).astype(np.float64), axis=1)
            scale = np.where((na > _EPS) & (nb > _EPS), na / np.maximum(nb, _EPS), 1.0)
            # a ratio beyond 1e4 is no rescaling obfuscation; clipping keeps float32 finite
            scale = np.clip(scale, 1e-4, 1e4).astype(np.float32)
            _apply(b_params, c, np.arange(scale.size), scale)
            prev = done[c.b].scale
            done[c.b].scale = scale if prev is None else prev * scale
    return done


#: Classes wider than this are assigned among each unit's :data:`CANDIDATES` most similar units
#: of B (the full assignment when those admit none). Near-optimal, not always optimal: on the
#: 1536-unit feed-forward layers of two independent MiniLM-sized encoders it gave the dense
#: optimum in a third of the time; on a barely related random matrix it came within 1e-4 of it.
#: In the evidence the unit-order test stays exact (the procedure is equivariant); the aligned
#: test's similarity can only come out lower than the dense matching's it was calibrated with
#: (conservative).
SPARSE_ABOVE = 512
CANDIDATES = 64


def _junction_matching(a_params: dict, b_params: dict, c: Chain, inner: bool) -> np.ndarray:
    """The matching of a junction's units (``perm[u]``: B's unit for A's unit ``u``) by the
    similarity of their incoming and outgoing weights and their followers' parameters, within
    groups; units feeding a grouped convolution in blocks, whole blocks moving only when the
    groups' output channels can follow (``inner``: the grouped layer's junction is aligned too)."""
    pa, pb = a_params[c.a], b_params[c.b]
    units = pb["weight"].shape[0]
    blocks = [(_in_features(pa, []), _in_features(pb, [])),
              (out_features(c.reader.columns(a_params[c.a_next]["weight"]), units, c.spatial,
                            c.channels_last, c.next_groups),
               out_features(c.reader.columns(b_params[c.b_next]["weight"]), units, c.spatial,
                            c.channels_last, c.next_groups))]
    blocks += [(per_unit(a_params[fa]), per_unit(b_params[fb])) for fa, fb in c.followers]
    weights = [1.0, 1.0] + [0.5] * len(c.followers)
    if c.groups == 1 and c.next_groups == 1:
        return best_matching(blocks, weights)
    sim = cosine_sum(blocks, weights)
    if c.groups > 1:  # no unit leaves its group
        block = np.arange(units) // (units // c.groups)
        sim = np.where(block[:, None] == block[None, :], sim, -1e6)
    if c.next_groups == 1:
        return best_assignment(sim)
    return block_assignment(sim, c.next_groups, movable=inner)


def _sparse_assignment(sim: np.ndarray) -> np.ndarray:
    """Maximum-similarity assignment restricted to each row's best :data:`CANDIDATES` columns."""
    from kernels.select import top_candidates  # numba: only for classes this wide
    n, k = sim.shape[0], min(CANDIDATES, sim.shape[1] - 1)
    cols, costs = np.empty(n * k, np.int32), np.empty(n * k)
    top_candidates(np.ascontiguousarray(sim, dtype=np.float32), k, cols, costs)
    graph = csr_matrix((costs, cols, np.arange(0, n * k + 1, k, dtype=np.int32)), shape=sim.shape)
    try:
        _, col = min_weight_full_bipartite_matching(graph)
    except ValueError:  # no full assignment among the candidates
        _, col = linear_sum_assignment(sim, maximize=True)
    return col


def best_assignment(sim: np.ndarray) -> np.ndarray:
    """Column of each row in the assignment of largest total similarity (``sim`` square): the
    rows' argmax when they all differ (it attains the bound: the common case for a derived
    model), a sparse assignment among candidates for wide matrices, else the dense solver."""
    best = np.argmax(sim, axis=1)
    if np.unique(best).size == best.size:
        return best
    if sim.shape[0] > SPARSE_ABOVE:
        return _sparse_assignment(sim)
    return linear_sum_assignment(sim, maximize=True)[1]


def _layers(c: Chain) -> tuple:
    """B's layers a junction reads and :func:`_apply` rewrites."""
    return (c.b, c.b_next, *(fb for _, fb in c.followers))


def _apply(b_params: dict, c: Chain, perm: np.ndarray, scale: np.ndarray | None) -> None:
    permute_units(b_params, perm, (c.b,), (c.reader,), tuple(fb for _, fb in c.followers),
                  scale=scale, next_groups=c.next_groups)


def permute_units(params: dict, perm: np.ndarray, rows: tuple = (), columns: tuple = (),
                  per_unit: tuple = (), span: tuple = (), scale: np.ndarray | None = None,
                  next_groups: int = 1, release: bool = False, tiles: dict | None = None) -> None:
    """The one permutation of a unit axis, in place on ``params``: unit ``u`` gets the
    parameters of unit ``perm[u]`` in every layer that carries the axis. Hidden units of one
    layer, a convolution's channels, a residual stream and an attention head's dimensions are
    all put in order by it, so a junction, a stream and a symmetry class are one operation.

    Parameters
    ----------
    params : dict of layer index to dict of str to ndarray
        Canonical parameters; the members' entries are replaced by permuted copies.
    perm : ndarray of shape (units,), int
    rows : tuple of int
        Layers whose output units (rows of the weight, entries of the bias) are the axis.
    columns : tuple of Reader
        Layers whose inputs are the axis.
    per_unit : tuple of int
        Layers with one entry per unit in every parameter (normalisations, depthwise
        convolutions).
    span : tuple of (int, int), or ()
        The axis is rows and columns ``span[0]:span[1]`` of its members (one attention head):
        the identity elsewhere. A reader's own span, where it has one, places its columns.
    scale : ndarray of shape (units,), optional
        Per unit in the new order: multiplies the rows and divides the columns (a rescaling
        undone where the ops between them are positively homogeneous).
    next_groups : int
        The column layers are grouped convolutions reading the units in this many blocks
        (:func:`permute_grouped_inputs`).
    release : bool
        Let the mapped originals' pages go after each member is copied (a residual stream
        touches most of a large model's layers: without it they would all stay resident).
    tiles : dict of int to int, optional
        Row layers whose output is split into this many equal blocks, each block carrying the
        axis (a GLU's two halves): every block is permuted alike (:func:`tiled`).
    """
    tiles = tiles or {}
    for r in rows:
        p = params[r]
        order = (tiled(perm, tiles[r]) if tiles.get(r, 1) > 1
                 else widened(perm, p["weight"].shape[0], span))
        w = take_rows(p["weight"], order)
        if scale is not None:
            w = w * np.tile(scale, tiles.get(r, 1)).reshape((-1,) + (1,) * (w.ndim - 1))
        p = dict(p, weight=kept(w))
        if "bias" in p:
            p["bias"] = kept(p["bias"][order] * (1 if scale is None
                                                  else np.tile(scale, tiles.get(r, 1))))
        params[r] = p
        if release:
            release_pages()  # copied in the new order: the mapped original may go
    for reader in columns:
        w = params[reader.layer]["weight"]
        if next_groups > 1:
            w = permute_grouped_inputs(w, perm, next_groups, scale)
        else:
            total = w.shape[1] // reader.spatial
            full = None if scale is None else spread(scale, total, reader.span or span)
            w = permute_inputs(w, widened(perm, total, reader.span or span), reader.spatial,
                               full, reader.channels_last)
        params[reader.layer] = dict(params[reader.layer], weight=w)
        if release:
            release_pages()
    for n in per_unit:
        params[n] = {k: (v if k == "eps" else v[widened(perm, v.shape[0], span)])
                     for k, v in params[n].items()}


def tiled(perm: np.ndarray, tiles: int) -> np.ndarray:
    """``perm`` over the units as a permutation of rows made of ``tiles`` equal blocks of them
    (the rows of a layer whose output is split into blocks that each carry the units)."""
    return np.concatenate([k * perm.size + perm for k in range(tiles)])


def side_by_side(rows: np.ndarray, tiles: int) -> np.ndarray:
    """Rows ``(tiles * units, ...)`` made of ``tiles`` equal blocks of the units as one row per
    unit, its blocks' rows in order: shape ``(units, tiles, ...)`` (:func:`tiled`'s layout)."""
    return np.moveaxis(rows.reshape((tiles, -1) + rows.shape[1:]), 0, 1)


def spread(scale: np.ndarray, total: int, span: tuple) -> np.ndarray:
    """Per-unit ``scale`` over the units ``span[0]:span[1]`` as float32 factors for all
    ``total`` units of a layer (1 outside the span)."""
    if not span:
        return scale.astype(np.float32)
    full = np.ones(total, np.float32)
    full[span[0]:span[1]] = scale
    return full


def widened(perm: np.ndarray, total: int, span: tuple = ()) -> np.ndarray:
    """``perm`` over the units ``span[0]:span[1]`` as a permutation of all ``total`` units of a
    layer (the identity outside the span); ``perm`` itself without a span."""
    if not span:
        return perm
    full = np.arange(total)
    full[span[0]:span[1]] = span[0] + perm
    return full