"""Symmetry classes and their class-by-class matching.

A symmetry class is a unit axis that B could permute without changing its function: the output
units of a hidden layer (with the BatchNorm/LayerNorm parameters and depthwise filters on the way
and the input columns of the layer that reads them), a residual stream (rows of every layer that
writes it, input columns of every layer that reads it, its LayerNorms), or the dimensions of one
attention head (q's rows with k's; v's rows with o's input columns). Only axes that
:func:`~onnx_lineage.matching.match` found in both models, over matched layers, become classes.

Independence tests rest on one fact (Zhu et al., ICML 2025): if B was initialised independently of
A and trained by a procedure that treats a class's units alike (SGD or Adam from an i.i.d.
initialisation), then B and B with the units of its classes permuted at random are equally likely.

:func:`match_classes` matches A's and B's units class by class, in graph order, so that every
matching is *equivariant*: relabelling B's units of class c relabels its matching the same way,
and leaves every other class's matching unchanged. Each class's features use only axes that are
fixed (the model's inputs and outputs, layers that are not in any class) or belong to a class
matched before it, with B's axis put in A's order by that earlier matching; other axes are left
out. Under the null, each matching is therefore a uniformly random permutation, independent of the
others, whatever A and B look like: the exact unit-order test (:mod:`.unit_order`) reads its
p-values off that, and the aligned test (:mod:`.aligned`) uses the same matchings.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import binom

from onnx_lineage.matching import recurrent_units
from onnx_lineage.matching.permutation import (Reader, best_matching, out_features, per_unit,
                                               permute_inputs, permute_units, row_norms,
                                               side_by_side, spread, tiled, widened)
from onnx_lineage.model.weights import release_pages
from onnx_lineage.threads import blas_threads, pool

#: Matched parameters from which the classes are matched on several threads (below, starting
#: the threads costs more than they save).
PARALLEL_FROM = 1_000_000


@dataclass(frozen=True)
class SymmetryClass:
    """One permutable unit axis, in A's layer indices (B's matched layers carry the same indices).

    Attributes
    ----------
    name : str
        For reports: ``layer 3 units``, ``layer 0 channels``, ``residual stream``.
    kind : str
        ``units`` (a dense layer's), ``channels`` (a convolution's), ``stream``,
        ``attention`` (the dimensions of one head) or ``recurrent`` (a recurrent layer's).
    width : int
        Number of units.
    rows : tuple of int
        Layers whose output units (rows of the canonical weight) are the class's units.
    columns : tuple of Reader
        Layers whose input columns carry the units (:class:`.permutation.Reader`: inputs per
        unit, their order, the block of a ``Concat`` they are).
    per_unit : tuple of int
        Layers with one slice per unit in every parameter: normalisation layers on the axis and
        depthwise convolutions.
    rescalable : bool
        Every op between the rows and the columns is positively homogeneous (ReLU, pooling), so
        scaling a unit's incoming weights by ``s`` and its outgoing ones by ``1/s`` is a symmetry
        too.
    span : tuple of (int, int), or ()
        ``(start, stop)``: the class's units are rows ``start:stop`` of its row layers and input
        columns ``start:stop`` of its column layers (one head of an attention block); ``()``:
        all of them.
    pruned : tuple of (str, int), or ()
        ``(side, kept)``: model ``side`` (``"a"`` or ``"b"``) has only ``kept`` real units here,
        the first ones; the rest are the zero units :mod:`onnx_lineage.matching.pruning` added.
    stream : int or None
        For a stream's class (residual, or hidden units shared with a gate): its index in the
        match's paired streams.
    pinned : str
        Why the class's order is part of the function (a residual stream that is the model's
        output, :attr:`.Stream.pinned`), or why B is not permuted there: B is compared in its
        own order, and the class's matching counts only as evidence that B kept A's order.
    gates : int
        For the hidden units of a recurrent layer (its one row layer), its gates per unit
        (:mod:`.recurrent_units`); 0 otherwise.
    direction : int
        For a recurrent layer, the direction whose units these are.
    tiles : tuple of (int, int)
        Row layers whose output is split into equal blocks that each carry the units (a GLU's
        halves, :attr:`.Stream.tiles`), with their number of blocks.
    """

    name: str
    kind: str
    width: int
    rows: tuple
    columns: tuple = ()
    per_unit: tuple = ()
    rescalable: bool = False
    span: tuple = ()
    pruned: tuple = ()
    stream: int | None = None
    pinned: str = ""
    gates: int = 0
    direction: int = 0
    tiles: tuple = ()

    @property
    def layers(self) -> tuple:
        """Every layer whose parameters carry the class's units, rows first."""
        return self.rows + tuple(c.layer for c in self.columns) + self.per_unit

    def permute(self, params: dict, perm: np.ndarray, only: set | None = None) -> None:
        """Give unit ``u`` the parameters of unit ``perm[u]``, in every member, in place.

        Parameters
        ----------
        params : dict of layer index to dict of str to ndarray
            Canonical parameters; the members' entries are replaced by permuted copies.
        perm : ndarray of shape (width,), int
        only : set of int, optional
            Permute only these members (one layer at a time: a copy of one layer, not of all).
        """
        if self.gates:  # compared in place (pinned): the basin test's copies leave them alone
            raise ValueError(f"{self.name}: a recurrent layer's units are never permuted")
        if only is not None:
            cut = replace(
                self, rows=tuple(r for r in self.rows if r in only),
                columns=tuple(c for c in self.columns if c.layer in only),
                per_unit=tuple(n for n in self.per_unit if n in only))
            return cut.permute(params, perm)
        permute_units(params, perm, self.rows, self.columns, self.per_unit, self.span,
                      tiles=dict(self.tiles))

    def row_order(self, perm: np.ndarray, layer: int, total: int) -> np.ndarray:
        """``perm`` over the class's units as the order of all ``total`` rows of its row layer
        ``layer`` (the identity outside the class's span; every block alike for a tiled one)."""
        k = dict(self.tiles).get(layer, 1)
        return tiled(perm, k) if k > 1 else widened(perm, total, self.span)

    def unit_rows(self, w: np.ndarray, layer: int) -> np.ndarray:
        """The class's rows of row layer ``layer``'s ``w`` (or bias), one row per unit: a tiled
        layer's blocks side by side, shape (width, ...)."""
        k = dict(self.tiles).get(layer, 1)
        if k == 1:
            return self.part(w)
        rows = side_by_side(w, k)  # (width, k, ...)
        return rows.reshape((self.width, -1) + w.shape[2:] if w.ndim > 1 else (self.width, k))

    def part(self, w: np.ndarray) -> np.ndarray:
        """The class's rows of ``w``."""
        return w if not self.span else w[self.span[0]:self.span[1]]


def symmetry_classes(m) -> list[SymmetryClass]:
    """The classes of a :class:`~onnx_lineage.matching.MatchResult`, in graph order
    (:func:`classes_of` its parts)."""
    c = m.correspondence
    return classes_of(c.a_layers, m.pruned, c.chains, c.stream_pairs, c.a_params, c.attention)


def classes_of(a_layers: list, pruned: list, chains: list, stream_pairs: list, a_params: dict,
               attention: list) -> list[SymmetryClass]:
    """The symmetry classes of a correspondence, in graph order.

    Hidden units come from the chains (a layer, the normalisation layers after it, the layer that
    reads it), residual streams from the paired streams (their matched members), the dimensions
    of attention heads from the attention blocks (:mod:`onnx_lineage.model.attention`).

    Parameters
    ----------
    a_layers : list of Layer
        A's canonical layers.
    pruned : list of dict
        ``MatchResult.pruned``.
    chains, stream_pairs, attention : list
        As in :class:`~onnx_lineage.matching.MatchResult`.
    a_params : dict of layer index to dict of str to ndarray
        A's parameters of the matched layers.
    """
    kinds = {layer.index: layer.kind for layer in a_layers}
    found = _junction_classes(chains, kinds, a_params,
                              {p["a"]: (p["pruned"], p["kept"]) for p in pruned})
    found += _stream_classes(stream_pairs, kinds, set(a_params))
    taken = {r for c in found for r in c.rows}
    for block in attention:
        found += _head_classes(block, taken)
    found += _recurrent_classes(a_layers, a_params)
    return sorted(found, key=lambda c: (min(c.rows), c.span, c.direction))


def _junction_classes(chains: list, kinds: dict, a_params: dict, pruned: dict
                      ) -> list[SymmetryClass]:
    """A layer's hidden units (a convolution's channels, one class per group of a grouped one)
    with the normalisations after them and the layer that reads them."""
    found = []
    for c in chains:
        if c.next_groups > 1:  # read by a grouped convolution: its blocks move as wholes, which
            continue  # no class here expresses (the smaller group of the others stays exact)
        unit = "channels" if kinds.get(c.a) == "conv" else "units"
        width = int(a_params[c.a]["weight"].shape[0])
        # a grouped convolution's channels permute only within their group: one class per group
        spans = ([()] if c.groups == 1 else
                 [(k * width // c.groups, (k + 1) * width // c.groups) for k in range(c.groups)])
        for g, span in enumerate(spans):
            found.append(SymmetryClass(
                f"layer {c.a} {unit}" + (f" group {g}" if span else ""), unit,
                span[1] - span[0] if span else width, (c.a,),
                columns=(Reader(c.a_next, c.spatial, c.channels_last, c.next_span),),
                per_unit=tuple(fa for fa, _ in c.followers),
                rescalable=c.homogeneous and not c.followers, span=span,
                pruned=pruned.get(c.a, ())))
    return found


def _stream_classes(stream_pairs: list, kinds: dict, matched: set) -> list[SymmetryClass]:
    """Residual streams, gated hidden units and units read by several layers, over their
    matched members."""
    found = []
    for k, (sa, sb) in enumerate(stream_pairs):
        rows = tuple(i for i in sa.writers if i in matched)
        if not rows:
            continue
        members = {"columns": tuple(Reader(i, span=sa.span(i)) for i in sa.readers
                                    if i in matched),
                   "tiles": tuple((i, k) for i, k in sa.tiles if i in rows),
                   "per_unit": tuple(i for i in sa.followers if i in matched), "stream": k}
        if sa.residual:
            pinned = sa.pinned or sb.pinned
            found.append(SymmetryClass(
                "residual stream" + (" (the model's output)" if pinned else ""), "stream",
                sa.width, rows, pinned=pinned, **members))
        else:  # hidden units shared with a gate, or read by several layers
            unit = "channels" if kinds.get(rows[0]) == "conv" else "units"
            how = f"read by {len(sa.readers)} layers" if sa.shared else "gated"
            found.append(SymmetryClass(f"layer {rows[0]} {unit} ({how})", unit, sa.width, rows,
                                       **members))
    return found


def _recurrent_classes(a_layers: list, a_params: dict) -> list[SymmetryClass]:
    """The hidden units of each matched recurrent layer, one class per direction
    (:mod:`.recurrent_units`)."""
    found = []
    for layer in a_layers:
        if layer.kind in recurrent_units.GATES and layer.index in a_params:
            params = a_params[layer.index]
            dirs = recurrent_units.directions(params)
            found += [SymmetryClass(f"layer {layer.index} hidden units"
                                    + (f" direction {d}" if dirs > 1 else ""), "recurrent",
                                    recurrent_units.width(params), (layer.index,),
                                    pinned=recurrent_units.PINNED,
                                    gates=recurrent_units.GATES[layer.kind], direction=d)
                      for d in range(dirs)]
    return found


def _head_classes(block, taken: set) -> list[SymmetryClass]:
    """Per head of an attention block: its q/k dimensions (rows of q and k, permuted together)
    and its v/o dimensions (rows of v, input columns of o). Heads themselves stay in place:
    permuting only within heads is a smaller group, so the tests stay exact."""
    out = []
    for h in range(block.heads):
        span = (h * block.head_dim, (h + 1) * block.head_dim)
        head = f" head {h}" if block.heads > 1 else ""
        if not {block.q, block.k} & taken:
            out.append(SymmetryClass(f"layer {block.q} q/k{head}", "attention", block.head_dim,
                                     (block.q, block.k), span=span))
        if block.v is not None and block.o is not None and block.v not in taken:
            out.append(SymmetryClass(f"layer {block.v} v/o{head}", "attention", block.head_dim,
                                     (block.v,), (Reader(block.o),), span=span))
    return out


@dataclass(frozen=True)
class ClassMatch:
    """How B's units of one class map onto A's.

    Attributes
    ----------
    cls : SymmetryClass
    perm : ndarray of shape (width,), int64
        A's unit ``u`` is matched to B's unit ``perm[u]``.
    fixed_points : int
        Units matched to their own index: B kept A's order there.
    similarity : float
        Median over A's units of the cosine between its incoming weights (and bias) and those of
        its matched unit of B, every aligned input axis put in A's order (``in:`` blocks). Where
        no incoming weights could be aligned, the mean cosine over the other blocks.
    fan_in : int
        Length of the vectors ``similarity`` compares.
    blocks : tuple of str
        Which features the matching compared (``in:3``, ``unit:4``, ``out:5``; ``sorted:3`` when no
        axis could be aligned and sorted values stood in).
    scale : ndarray of shape (width,) or None
        For a rescalable class, the norm of each matched unit's incoming weights in B over A's:
        a later class reading this axis multiplies B's inputs by it, undoing a rescaling.
    layers : tuple of int
        The layers this class's evidence speaks for: those producing its units (rows, per-unit
        layers) and the readers whose outputs are fixed (a head over the classes), not readers
        whose own units form another class (a neck on a shared backbone is not shared).
    """

    cls: SymmetryClass
    perm: np.ndarray
    fixed_points: int
    similarity: float
    fan_in: int
    blocks: tuple
    scale: np.ndarray | None = None
    layers: tuple = ()


def match_classes(classes: list[SymmetryClass], a_params: dict, b_params: dict,
                  rng: np.random.Generator, workers: int | None = None) -> list[ClassMatch]:
    """Match each class's units of B to A's, in order, equivariantly (see the module docstring).

    Parameters
    ----------
    classes : list of SymmetryClass
        In graph order (:func:`symmetry_classes`).
    a_params, b_params : dict of layer index to dict of str to ndarray
        A's parameters and B's in its own unit order (``MatchResult.a_params``/``b_own``).
    rng : numpy Generator
        Breaks ties at random (:func:`assignment`), which keeps the matching equivariant when
        units tie exactly (all-zero units of a pruned model).
    workers : int, optional
        Threads: a class waits only for the earlier classes whose axes its features use, so the
        feed-forward blocks of a transformer are matched side by side (the assignment solver
        releases the GIL). Default: the CPU count, at most 4, from :data:`PARALLEL_FROM`
        matched parameters, one (the caller's thread) below. While they run, the BLAS library
        gets the cores divided among them (each product on its share, not every product on
        every core: on 2 cores, BERT-base's class matching about 25% faster). The result does
        not depend on either.

    Returns
    -------
    list of ClassMatch, in the order of ``classes``
    """
    row_owner: dict[int, list] = {}  # layer -> the classes over its rows (one per head)
    col_owner: dict[int, list] = {}  # layer -> (class, Reader) over its inputs
    for k, c in enumerate(classes):
        for r in c.rows if not c.gates else ():  # a recurrent layer's rows are gate blocks
            row_owner.setdefault(r, []).append(k)
        for reader in c.columns:
            col_owner.setdefault(reader.layer, []).append((k, reader))
    relabels = [rng.permutation(c.width) for c in classes]
    cores = os.cpu_count() or 1
    if workers is None:
        size = sum(v.size for p in a_params.values() for v in p.values())
        workers = min(cores, 4) if size >= PARALLEL_FROM else 1
    with blas_threads(cores // workers if workers > 1 else 0), \
            pool(workers) as tasks:  # FIFO: earlier classes start first
        futures: list[Future] = []
        for k, cls in enumerate(classes):
            deps = {j: futures[j] for j in _dependencies(cls, k, row_owner, col_owner)}
            futures.append(tasks.submit(_match_one, cls, k, a_params, b_params, row_owner,
                                        col_owner, deps, relabels[k]))
        return [f.result() for f in futures]


def _dependencies(cls: SymmetryClass, k: int, row_owner: dict, col_owner: dict) -> set[int]:
    """Earlier classes whose axes class ``k``'s features read (its rows' inputs, its readers'
    outputs)."""
    deps = {j for r in cls.rows for j, _ in col_owner.get(r, [])}
    deps |= {j for c in cls.columns for j in row_owner.get(c.layer, [])}
    return {j for j in deps if j < k}


def _match_one(cls: SymmetryClass, k: int, a_params: dict, b_params: dict, row_owner: dict,
               col_owner: dict, deps: dict, relabel: np.ndarray) -> ClassMatch:
    done = {j: f.result() for j, f in deps.items()}
    fa, fb, names = _features(cls, k, a_params, b_params, row_owner, col_owner, done)
    perm = assignment(fa, fb, relabel)
    similarity, fan_in = _matched_similarity(fa, fb, names, perm)
    readers = tuple(c.layer for c in cls.columns if c.layer not in row_owner)
    layers = cls.rows + cls.per_unit + readers
    if cls.pinned:  # members paired apart (a cousin's blocks) are not what its order speaks for
        layers = _agreeing_members(cls, fa, fb, names, perm, layers, a_params, b_params)
    release_pages()  # the class's weights are read: their mapped pages need not stay resident
    return ClassMatch(cls, perm, int(np.sum(perm == np.arange(cls.width))), similarity, fan_in,
                      tuple(names), scale=_scale(fa, fb, names, perm, cls.rescalable),
                      layers=layers)


def _agreeing_members(cls: SymmetryClass, fa, fb, names, perm, layers: tuple, a_params: dict,
                      b_params: dict) -> tuple:
    """The members of ``layers`` whose own features agree at the matching: more matched units
    with a positive cosine than a sign test allows by chance (level 0.001 over the members,
    Bonferroni). Features are centred over the units first (a LayerNorm's scales near 1 agree
    with any other's): a member independent of A's then has cosines symmetric about 0 at any
    matching that its features did not decide. A row member whose inputs another class orders
    (left out of the matching's features) is judged by its rows' values sorted."""
    blocks = [(int(n.split(":")[1]), fa[k], fb[k]) for k, n in enumerate(names)]
    for r in set(cls.rows) - {b[0] for b in blocks}:
        blocks.append((r, *(np.sort(cls.unit_rows(p[r]["weight"], r).reshape(cls.width, -1), axis=1)
                            for p in (a_params, b_params))))
    level = 1e-3 / max(len(blocks), 1)
    agree = set()
    for layer, x, y in blocks:
        x, y = (np.asarray(f, np.float64).reshape(cls.width, -1) for f in (x, y))
        cos = _matched_cosines([x - x.mean(axis=0)], [y - y.mean(axis=0)], perm)
        if binom.sf(int(np.sum(cos > 0)) - 1, cos.size, 0.5) <= level:
            agree.add(layer)
    return tuple(x for x in layers if x in agree)


def _scale(fa, fb, names, perm, rescalable: bool) -> np.ndarray | None:
    """Norm of B's matched incoming weights over A's, per A unit (None: not rescalable)."""
    incoming = [k for k, n in enumerate(names) if n.startswith("in:")]
    if not rescalable or not incoming:
        return None
    na = row_norms(np.concatenate([fa[k] for k in incoming], axis=1))
    nb = row_norms(np.concatenate([fb[k] for k in incoming], axis=1)[perm])
    return np.where((na > 0) & (nb > 0), nb / np.maximum(na, 1e-30), 1.0).clip(1e-4, 1e4)


def assignment(fa: list, fb: list, relabel: np.ndarray) -> np.ndarray:
    """The matching of B's units to A's (``perm[u]``: B's unit for A's unit ``u``) with the
    largest sum over feature blocks (``fa[k]`` (n, d) against ``fb[k]`` (n, d)) of the matched
    units' cosines, each block's weighted by the square root of its length ``d``: the cosine of
    unrelated ``d``-long vectors spreads as ``1 / sqrt(d)``, so each block counts in units of its
    own chance spread (a head's four output weights per unit no longer outvote an embedding's
    thousands).

    Equivariant in B's units: they are relabelled by the random ``relabel`` first and the labels
    restored after, so exact ties cannot favour B's own order. The similarity
    (:class:`~onnx_lineage.matching.permutation.CosineSum`: sketched for very large classes, on
    features only) and the solver (:func:`~onnx_lineage.matching.permutation.best_assignment`:
    the argmax when every row's best column differs, found slab by slab without the whole
    matrix (:func:`~onnx_lineage.matching.permutation.best_matching`), sparse candidates for
    wide classes) work on
    the relabelled units, so the matching stays equivariant.
    """
    weights = [float(np.sqrt(x[0].size)) if len(x) else 1.0 for x in fa]
    best = best_matching(list(zip(fa, fb)), weights, relabel=relabel)
    return relabel[best].astype(np.int64)


def _matched_similarity(fa, fb, names, perm) -> tuple[float, int]:
    """Median matched cosine of the incoming weights (all ``in:`` blocks side by side), and their
    length; without any, the mean over blocks of the matched cosines."""
    incoming = [k for k, n in enumerate(names) if n.startswith("in:")]
    if incoming:
        cos = _matched_cosines([fa[k] for k in incoming], [fb[k] for k in incoming], perm)
        return float(np.median(cos)), int(sum(fa[k].shape[1] for k in incoming))
    matched = sum(_matched_cosines([x], [y], perm) for x, y in zip(fa, fb))
    return float(np.median(matched / len(fa))), int(sum(x.shape[1] for x in fa))


#: Rows (units, or features where units are columns in memory) that :func:`_matched_cosines`
#: gathers at once: small enough to stay under numpy's 4 MB huge-page threshold.
_ROWS_AT_ONCE = 512


def _matched_cosines(xs: list, ys: list, perm: np.ndarray) -> np.ndarray:
    """Per A unit ``u``, the cosine of its features (the blocks ``xs``, (n, d_k) each, side by
    side) with B unit ``perm[u]``'s (``ys``), in float64 (0 for a zero row): products summed
    block by block, nothing concatenated or normalised."""
    dots = np.zeros(perm.size)
    na = np.zeros(perm.size)
    nb = np.zeros(perm.size)
    for x, y in zip(xs, ys):
        if x.T.flags.c_contiguous and y.T.flags.c_contiguous:  # units are columns in memory
            xt, yt = x.T, y.T  # features a few rows at a time, B's columns gathered in each
            for lo in range(0, xt.shape[0], _ROWS_AT_ONCE):
                part = slice(lo, lo + _ROWS_AT_ONCE)
                dots += np.einsum("ij,ij->j", xt[part], yt[part][:, perm], dtype=np.float64)
        else:
            for lo in range(0, perm.size, _ROWS_AT_ONCE):  # B's rows gathered a few at a time
                part = slice(lo, lo + _ROWS_AT_ONCE)
                dots[part] += np.einsum("ij,ij->i", x[part], y[perm[part]], dtype=np.float64)
        na += row_norms(x) ** 2
        nb += row_norms(y)[perm] ** 2
    norm = np.sqrt(na) * np.sqrt(nb)
    return np.where(norm > 0, dots / np.where(norm > 0, norm, 1.0), 0.0)


def _features(cls: SymmetryClass, k: int, a_params: dict, b_params: dict, row_owner: dict,
              col_owner: dict, done: dict) -> tuple[list, list, list]:
    """Feature blocks (units, features) of A and B for class ``k``, and their names."""
    if cls.gates:
        return _recurrent_features(cls, a_params, b_params, col_owner, done)
    fa, fb, names = [], [], []
    for r in cls.rows:
        owners = col_owner.get(r, [])
        if any(j not in done for j, _ in owners):  # an input axis not matched yet: left out
            continue
        wb = _aligned_inputs(b_params[r]["weight"], [(done[j], c) for j, c in owners])
        fa.append(_with_bias(cls.unit_rows(a_params[r]["weight"], r), a_params[r], cls, r))
        fb.append(_with_bias(cls.unit_rows(wb, r), b_params[r], cls, r))
        names.append(f"in:{r}")
    for n in cls.per_unit:
        fa.append(cls.part(per_unit(a_params[n])))
        fb.append(cls.part(per_unit(b_params[n])))
        names.append(f"unit:{n}")
    for reader in cls.columns:
        owners = row_owner.get(reader.layer, [])
        if any(j not in done for j in owners):  # its outputs are units matched later
            continue
        wa, wb = a_params[reader.layer]["weight"], b_params[reader.layer]["weight"]
        for j in owners:
            wb = wb[done[j].cls.row_order(done[j].perm, reader.layer, wb.shape[0])]
        for w, f in ((wa, fa), (wb, fb)):
            f.append(out_features(reader.columns(w, cls.span), cls.width, reader.spatial,
                                  reader.channels_last))
        names.append(f"out:{reader.layer}")
    if not fa:  # nothing aligned: every unit's values sorted, blind to any other axis's order
        for r in cls.rows:
            fa.append(np.sort(cls.unit_rows(a_params[r]["weight"], r).reshape(cls.width, -1),
                              axis=1))
            fb.append(np.sort(cls.unit_rows(b_params[r]["weight"], r).reshape(cls.width, -1),
                              axis=1))
            names.append(f"sorted:{r}")
    return fa, fb, names


def _recurrent_features(cls: SymmetryClass, a_params: dict, b_params: dict, col_owner: dict,
                        done: dict) -> tuple[list, list, list]:
    """A recurrent layer's units (:mod:`.recurrent_units`): their input weights, the input axis
    in A's order where one class owns it whole (else sorted), and their own recurrent weights
    and biases."""
    (r,) = cls.rows
    owners = [(done[j], c) for j, c in col_owner.get(r, []) if j in done]
    order = None
    if (len(owners) == 1 and owners[0][1].spatial == 1 and not owners[0][0].cls.span
            and not owners[0][1].span):
        order = owners[0][0].perm
    pa, pb = a_params[r], b_params[r]
    name = f"in:{r}" if order is not None else f"sorted:{r}"
    fa = [recurrent_units.incoming(pa, cls.gates, cls.direction, None if order is None
                                   else np.arange(order.size)),
          recurrent_units.own(pa, cls.gates, cls.direction)]
    fb = [recurrent_units.incoming(pb, cls.gates, cls.direction, order),
          recurrent_units.own(pb, cls.gates, cls.direction)]
    return fa, fb, [name, f"unit:{r}"]


def _aligned_inputs(w: np.ndarray, owners: list) -> np.ndarray:
    """B's weight with its input axis in A's order (each owning class's matching applied over its
    span), a rescaling undone.

    Parameters
    ----------
    w : ndarray
        A canonical weight ``(out, in, ...)``.
    owners : list of (ClassMatch, Reader)
        The classes over its inputs, with how ``w``'s layer reads each.
    """
    for m, reader in owners:
        spatial, channels_last = reader.spatial, reader.channels_last
        total = w.shape[-1] if channels_last and w.ndim > 2 else w.shape[1] // spatial
        span = reader.span or m.cls.span
        perm = widened(m.perm, total, span)
        scale = None if m.scale is None else spread(m.scale, total, span)
        if w.ndim == 2:
            w = permute_inputs(w, perm, spatial, None if scale is None else 1.0 / scale,
                               channels_last)
        elif channels_last:  # a recurrent layer's W: units on its last axis
            w = w[..., perm] * (1.0 if scale is None else scale)
        else:
            w = w[:, perm]
            if scale is not None:
                w = w * scale.reshape((1, -1) + (1,) * (w.ndim - 2))
    return w


def _with_bias(w: np.ndarray, params: dict, cls: SymmetryClass, layer: int) -> np.ndarray:
    """Rows of ``w`` with the class's part of ``layer``'s bias as last columns."""
    rows = w.reshape(w.shape[0], -1)
    if "bias" not in params:
        return rows
    return np.concatenate([rows, cls.unit_rows(params["bias"], layer).reshape(cls.width, -1)],
                          axis=1)

