"""Parameter correspondence between two models: the ``match`` analysis."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from onnx_lineage.matching.align import align
from onnx_lineage.matching.batchnorm import fold
from onnx_lineage.matching.classes import classes_of, match_classes
from onnx_lineage.matching.constants import is_signal_constant
from onnx_lineage.matching.layout import kernel_layouts
from onnx_lineage.matching.permutation import Chain, align_units, to_layout
from onnx_lineage.matching.pruning import pad, pruned_chains
from onnx_lineage.matching.rotation import fit_rotation, fixed_members, rotate_back
from onnx_lineage.matching.streams import align_streams, pair_streams, permute_stream
from onnx_lineage.model.footprint import match_footprint, require
from onnx_lineage.model.attention import attention
from onnx_lineage.model.loading import LoadedModel, as_loaded
from onnx_lineage.model.ops import dims_of
from onnx_lineage.model.parameters import Layer, as_single, extract_layers
from onnx_lineage.model.rotatable import rotation_blocker
from onnx_lineage.model.streams import streams
from onnx_lineage.model.topology import links, scope_graphs
from onnx_lineage.model.weights import release_pages
from onnx_lineage.results import Result
from onnx_lineage.wording import ranges


@dataclass
class Correspondence:
    """What ``match`` put in correspondence, for the analyses that read weights (never
    serialised; :class:`MatchResult` is the report). ``match`` fills it stage by stage; the
    analyses only read it.

    Attributes
    ----------
    a_layers, b_layers : list of Layer
        A's and B's canonical layers (after any BatchNorm folding), B's before alignment.
    b_aligned : dict
        A's layer index -> B's parameters for it, permuted/rescaled into A's unit order.
    folded : str or None
        ``"a"`` or ``"b"`` when that model's BatchNorm layers were folded to match the other.
    chains : list of Chain
        Permutable junctions (in A's and B's indices) used to align units.
    a_params : dict
        A's layer index -> A's parameters, for matched layers, with the same keys as B's.
    b_own : dict
        A's layer index -> B's parameters for it in B's own unit order: every layout conversion
        (orientation, flatten order, BatchNorm folding, a dropped zero bias) applied, no
        permutation or rescaling of units; a rotated stream in ``rotations`` is in A's
        coordinates (its axis is then fixed, like an input's).
    stream_pairs : list of (Stream, Stream)
        Residual streams of A and B over the same matched layers (less those rotated back).
    rotations : list of StreamRotation
        Every fit of a paired stream of B to A's coordinates by an orthogonal matrix
        (:mod:`.rotation`), accepted or not; the accepted ones were rotated back in ``b_own``
        and ``b_aligned`` and their streams left the pairs (no class: their order is A's by
        construction).
    attention : list
        Attention blocks found in both models over matched layers (A's indices; v and o None
        where they differ between A and B).
    classes : list of SymmetryClass
        The symmetry classes (:func:`~onnx_lineage.matching.classes.classes_of`).
    class_matches : list of ClassMatch or None
        Their equivariant matching (:func:`~onnx_lineage.matching.classes.match_classes`),
        which the exact tests read and the alignment starts from; None when ``match`` ran
        without ``permutations``.
    units : dict of int to UnitAlignment
        B's layer index -> what weight matching did to that junction's units: the permutation
        and the per-unit scale applied to ``b_aligned`` (:func:`.permutation.align_units`).
    """

    a_layers: list = field(default_factory=list)
    b_layers: list = field(default_factory=list)
    b_aligned: dict = field(default_factory=dict)
    folded: str | None = None
    chains: list = field(default_factory=list)
    a_params: dict = field(default_factory=dict)
    b_own: dict = field(default_factory=dict)
    stream_pairs: list = field(default_factory=list)
    attention: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    class_matches: list | None = None
    units: dict = field(default_factory=dict)
    rotations: list = field(default_factory=list)


@dataclass(frozen=True)
class MatchResult(Result):
    """Layer correspondence of A and B: the report (plain data, what the JSON holds), with the
    arrays and unit axes it was read from in :attr:`correspondence` (B's parameters mapped onto
    A's layout, ``m.correspondence.a_params`` and the like).

    Attributes
    ----------
    pairs : list of dict
        Per matched layer: ``a``, ``b`` (layer indices), ``kind``, ``shape``, ``transforms``,
        ``cosine`` (after alignment).
    coverage : dict
        ``a``/``b``: fraction of each model's parameters that were matched.
    unmatched : dict
        ``a``/``b``: indices of layers left unmatched.
    excluded : list of dict
        Matched layers that are fixed signal-processing constants in both models (DFT bases,
        sinusoidal position tables): not trained, so left out of the pairs, the coverage and
        the evidence.
    pruned : list of dict
        Pruned units: per hidden layer whose units differ in number (``a``, ``b``), the model
        with fewer (``pruned``: ``"a"`` or ``"b"``), how many it kept, of how many
        (``units``), and that ratio (``coverage``). The smaller model's parameters in the
        correspondence's ``a_params`` / ``b_own`` / ``b_aligned`` carry zero units at the end
        (:mod:`onnx_lineage.matching.pruning`).
    """

    model_a: str
    model_b: str
    pairs: list
    coverage: dict
    unmatched: dict
    transforms: list
    limits: list
    statement: str
    excluded: list
    pruned: list
    _correspondence: Correspondence = field(default_factory=Correspondence, repr=False,
                                            compare=False)

    @property
    def correspondence(self) -> Correspondence:
        """The arrays and unit axes this report was read from (never serialised)."""
        return self._correspondence


def _layer_cosine(pa: dict, pb: dict, keys: list, chunk: int = 1 << 16) -> float:
    """Cosine of two layers' parameters ``keys`` taken as one vector each: products summed in
    float32 per chunk and in float64 over chunks, with no copy of a weight that both layers hold
    in one memory order (a transposed view included)."""
    dot = na = nb = 0.0
    for k in keys:
        x, y = _in_one_order(pa[k], pb[k])
        for start in range(0, x.size, chunk):
            u, v = x[start:start + chunk], y[start:start + chunk]
            dot += float(np.dot(u, v))
            na += float(np.dot(u, u))
            nb += float(np.dot(v, v))
    if na == 0 or nb == 0 or not np.isfinite(na * nb):  # zeros, or float32 overflow
        return _cosine64(flat(pa, keys), flat(pb, keys))
    return dot / float(np.sqrt(na) * np.sqrt(nb))


def _in_one_order(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` (one shape) as flat float32 vectors in one element order, without copying
    arrays that are both C-ordered or both transposed views."""
    if not (x.flags.c_contiguous and y.flags.c_contiguous) and x.ndim == 2 and (
            x.T.flags.c_contiguous and y.T.flags.c_contiguous):
        x, y = x.T, y.T
    return (np.ascontiguousarray(as_single(x)).reshape(-1),
            np.ascontiguousarray(as_single(y)).reshape(-1))


def _cosine64(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float(na == nb)
    return float(np.dot(a, b) / (na * nb))


def flat(params: dict, keys=None) -> np.ndarray:
    """Parameters of one layer as one float32 vector (``eps`` excluded), in a fixed key order."""
    keys = keys or sorted(k for k in params if k != "eps")
    return np.concatenate([params[k].reshape(-1) for k in keys]).astype(np.float32, copy=False)


def common_keys(pa: dict, pb: dict) -> list[str]:
    """Parameter names present in both layers (a dropped zero bias counts as present)."""
    return sorted(k for k in set(pa) | set(pb) if k != "eps" and (k in pa or k == "bias")
                  and (k in pb or k == "bias"))


def with_bias(params: dict, keys: list[str]) -> dict:
    """``params`` with a zero bias added where ``keys`` asks for one it lacks (tf2onnx drops them)."""
    if "bias" in keys and "bias" not in params:
        params = dict(params, bias=np.zeros(params["weight"].shape[0], np.float32))
    return params


def match(a, b, *, permutations: bool = True, progress=None,
          rng: np.random.Generator | None = None, rescale: bool = True) -> MatchResult:
    """Put the parameters of models A and B in correspondence.

    The symmetry classes' equivariant matching (:mod:`onnx_lineage.matching.classes`, what the
    exact tests read) comes first; B's residual streams are put in A's order by it, and the
    hidden units of each junction by weight matching (:func:`.permutation.align_units`), which
    takes the classes' matchings where they compare the same weights.

    Parameters
    ----------
    a, b : path or LoadedModel
    permutations : bool
        Undo hidden-unit permutation and rescaling of B (weight matching), and permutations of
        residual streams (:mod:`onnx_lineage.model.streams`).
    progress : callable, optional
        Called with a description of each step as it starts.
    rng : numpy Generator, optional
        Breaks exact ties in the classes' matching at random (default: seed 0).
    rescale : bool
        With ``permutations``, also bring each of B's hidden units to the norm of A's (undoing
        a rescaling obfuscation, and with it any real change of a unit's norm); False: B's
        units are only permuted.

    Returns
    -------
    MatchResult
    """
    step = progress or (lambda name: None)
    step("reading the models")
    c = _Work(as_loaded(a), as_loaded(b))
    require(match_footprint(c.a.proto, c.b.proto), f"matching {c.a.name} and {c.b.name}")
    _pair_layers(c, step)
    _leave_out_constants(c)
    _pair_parameters(c)
    step("finding residual streams and permutable units")
    _unit_axes(c)
    if permutations:
        step(f"matching units class by class, undoing permutations: "
             f"{len(c.corr.stream_pairs)} stream(s), {len(c.corr.chains)} junction(s)")
        _align(c, rng if rng is not None else np.random.default_rng(0), rescale)
    return _report(c)


@dataclass
class _Work:
    """What ``match`` builds, stage by stage (each stage a function below that fills its part):
    the correspondence (``corr``: the layers, parameters and unit axes it hands on), and what
    only the building needs: how the layers link, the pairs (indices into the layer lists), B's
    parameters as they are being put in A's layout and order, and what the report says."""

    a: LoadedModel
    b: LoadedModel
    corr: Correspondence = field(default_factory=Correspondence)
    dims: tuple = ()
    graphs: tuple = ()
    links_a: dict = field(default_factory=dict)
    links_b: dict = field(default_factory=dict)
    pairs: list = field(default_factory=list)
    pruned: dict = field(default_factory=dict)
    fixed: tuple = (set(), set())
    excluded: list = field(default_factory=list)
    transforms: list = field(default_factory=list)
    limits: list = field(default_factory=list)
    b_params: dict = field(default_factory=dict)
    keys_of: dict = field(default_factory=dict)
    b_of: dict = field(default_factory=dict)
    moved: list = field(default_factory=list)


def _pair_layers(c: _Work, step) -> None:
    """Canonical layers, their links, BatchNorm folded where only one model has it, the layers
    paired (by kind and shape; by weights when the depths differ; with pruned widths)."""
    step("reading the parametric layers")
    c.corr.a_layers, c.corr.b_layers = extract_layers(c.a.proto), extract_layers(c.b.proto)
    step(f"pairing layers ({len(c.corr.a_layers)} in A, {len(c.corr.b_layers)} in B)")
    c.dims = (dims_of(c.a.proto), dims_of(c.b.proto))  # for the chains and the streams
    c.graphs = (scope_graphs(c.a.proto), scope_graphs(c.b.proto))  # for both as well
    c.links_a = links(c.a.proto, c.corr.a_layers, c.dims[0], c.graphs[0])
    c.links_b = links(c.b.proto, c.corr.b_layers, c.dims[1], c.graphs[1])
    has_bn_a = any(x.kind == "batchnorm" for x in c.corr.a_layers)
    has_bn_b = any(x.kind == "batchnorm" for x in c.corr.b_layers)
    if has_bn_a and not has_bn_b:
        c.corr.a_layers, idx = fold(c.corr.a_layers, c.links_a)
        c.corr.folded = "a" if idx else None
    elif has_bn_b and not has_bn_a:
        c.corr.b_layers, idx = fold(c.corr.b_layers, c.links_b)
        c.corr.folded = "b" if idx else None
    if c.corr.folded:
        c.transforms.append("BatchNorm folded into the preceding layers of "
                            f"{c.corr.folded.upper()} "
                            "(the other model has them folded)")
    la, lb = c.corr.a_layers, c.corr.b_layers
    deeper = len(la) != len(lb)  # layers dropped, duplicated or taken from a deeper teacher
    c.pairs = align(la, lb, by_weights=deeper)
    if deeper:
        c.transforms.append(_depth_note(c.pairs, la, lb))
    if len(c.pairs) < min(len(la), len(lb)):  # layers left over on both sides: pruned widths?
        wider, found = pruned_chains(align(la, lb, pruned=True), la, lb, c.links_a, c.links_b)
        if len(wider) > len(c.pairs) and found:
            c.pairs, c.pruned = wider, found


def _leave_out_constants(c: _Work) -> None:
    """Pairs of fixed signal-processing constants (DFT, STFT, CQT bases) leave the pairs."""
    la, lb = c.corr.a_layers, c.corr.b_layers
    c.fixed = ({x.index for x in la if x.kind in _TRAINABLE and is_signal_constant(x.weight)},
               {x.index for x in lb if x.kind in _TRAINABLE and is_signal_constant(x.weight)})
    both = [(i, j) for i, j in c.pairs if la[i].index in c.fixed[0] and lb[j].index in c.fixed[1]]
    c.excluded = [{"a": la[i].index, "b": lb[j].index, "kind": la[i].kind,
                   "shape": list(la[i].weight.shape),
                   "reason": "fixed signal-processing constant in both models (not trained)"}
                  for i, j in both]
    c.pairs = [p for p in c.pairs if p not in both]
    if c.excluded:
        c.transforms.append(f"{len(c.excluded)} fixed signal-processing constant layer(s) left "
                            "out of the evidence")


def _pair_parameters(c: _Work) -> None:
    """Each pair's parameters with the same keys, B's in A's layout (kernel layouts, flatten
    orders), zero units where one model is width-pruned."""
    la, lb = c.corr.a_layers, c.corr.b_layers
    c.corr.a_params = {la[i].index: la[i].params for i, _ in c.pairs}
    for i, j in c.pairs:
        keys = common_keys(la[i].params, lb[j].params)
        c.keys_of[la[i].index] = keys
        # new dicts, shared arrays: every step below replaces arrays, none writes into one
        c.b_params[lb[j].index] = dict(with_bias(lb[j].params, keys))
        c.corr.a_params[la[i].index] = with_bias(la[i].params, keys)
    c.b_of = {la[i].index: lb[j].index for i, j in c.pairs}
    c.transforms += kernel_layouts(c.pairs, la, lb, c.links_a, c.links_b, c.b_of, c.b_params)
    if _flatten_orders(c.pairs, la, lb, c.links_a, c.links_b, c.b_of, c.b_params):
        c.transforms.append("B's dense inputs reordered to A's flatten order "
                            "(channels-last against channels-first)")
    if c.pruned:
        pad(c.pruned, c.links_a, c.corr.a_params, c.b_params, c.b_of)
        for side in ("b", "a"):
            n = sum(1 for p in c.pruned.values() if p.side == side)
            if n:
                c.transforms.append(
                    f"{side.upper()} has fewer units in {n} hidden layer(s) (width-pruned): zero "
                    f"units added to {side.upper()} at the end, the same function, compared on "
                    "the units it kept")


def _unit_axes(c: _Work) -> None:
    """The unit axes both models have over the pairs: residual streams, junctions (chains),
    attention blocks; and B's parameters in its own unit order."""
    la, lb, corr = c.corr.a_layers, c.corr.b_layers, c.corr
    corr.stream_pairs, stream_limits = pair_streams(
        streams(c.a.proto, la, c.dims[0], c.graphs[0]),
        streams(c.b.proto, lb, c.dims[1], c.graphs[1]), c.b_of)
    in_streams = {i for sa, _ in corr.stream_pairs for i in sa.members}  # their units: no chains
    corr.chains, c.limits = _chains(c.pairs, la, lb, c.links_a, c.links_b, c.b_of,
                                 {x.index: x for x in la}, {x.index: x for x in lb}, in_streams)
    c.limits += stream_limits
    corr.b_own = {la[i].index: {k: v for k, v in c.b_params[lb[j].index].items()
                             if k in c.keys_of[la[i].index]} for i, j in c.pairs}
    corr.attention = _attention_pairs(attention(c.a.proto, la), attention(c.b.proto, lb), c.b_of)


def _align(c: _Work, rng: np.random.Generator, rescale: bool) -> None:
    """The classes matched equivariantly; B's streams and junctions put in A's unit order by
    them (and by weight matching where they do not decide), in place on ``c.b_params``."""
    corr = c.corr
    _undo_rotations(c)
    corr.classes = classes_of(corr.a_layers, _pruned_rows(c), corr.chains, corr.stream_pairs,
                              corr.a_params, corr.attention)
    corr.class_matches = match_classes(corr.classes, corr.a_params, corr.b_own, rng)
    moved, given = _aligned_by_classes(corr.class_matches, corr.stream_pairs, corr.chains, c.b_of,
                                       corr.a_params, c.b_params)
    c.moved = [s for s in moved if s.permuted]
    corr.units = (align_units(corr.a_params, c.b_params, corr.chains, rescale=rescale,
                              given=given) if corr.chains else {})


def _undo_rotations(c: _Work) -> None:
    """Fit each paired stream that a rotation of its coordinates leaves the same function in
    both models (:func:`.rotatable.rotation_blocker`) to A's coordinates; where the fit is
    accepted (:mod:`.rotation`), rotate B's stream back in ``c.b_params`` and ``b_own``, and
    take the stream out of the pairs."""
    corr = c.corr
    classes = classes_of(corr.a_layers, _pruned_rows(c), corr.chains, corr.stream_pairs,
                         corr.a_params, corr.attention)
    keep = []
    for k, (sa, sb) in enumerate(corr.stream_pairs):
        same = all(i in c.b_of for i in sa.members) and sorted(
            c.b_of[i] for i in sa.members) == sorted(sb.members)
        if not same or rotation_blocker(c.a.proto, corr.a_layers, sa, c.dims[0]) \
                or rotation_blocker(c.b.proto, corr.b_layers, sb, c.dims[1]):
            keep.append((sa, sb))
            continue
        fit = fit_rotation(sa, c.b_of, corr.a_params, c.b_params, fixed_members(sa, k, classes))
        corr.rotations.append(fit)
        if not fit.accepted:
            keep.append((sa, sb))
            continue
        rotate_back(sa, c.b_of, c.b_params, fit.rotation)
        for ai in sa.members:
            own = corr.b_own[ai]
            own.update({key: c.b_params[c.b_of[ai]][key] for key in own})
    corr.stream_pairs = keep


def _pruned_rows(c: _Work) -> list:
    return [{"a": ai, "b": c.b_of[ai], "pruned": p.side, "kept": p.kept, "units": p.width,
             "coverage": p.kept / p.width} for ai, p in sorted(c.pruned.items())]


def _pair_rows(c: _Work) -> tuple[list, dict]:
    """Per pair: its row of the report (transforms, cosine after alignment), and B's aligned
    parameters by A's layer index."""
    la, lb, units = c.corr.a_layers, c.corr.b_layers, c.corr.units
    in_moved = {j for s in c.moved for j in s.members}
    rotated = {j for r in c.corr.rotations if r.accepted for j in r.members}
    rows, aligned = [], {}
    for i, j in c.pairs:
        ai, bj = la[i].index, lb[j].index
        keys = c.keys_of[ai]
        tr = _layer_transforms(la[i], lb[j], c.corr.folded)
        if bj in units and units[bj].permuted:
            tr.append("permutation")
        if bj in units and units[bj].rescaled:
            tr.append("scale")
        if bj in in_moved:
            tr.append("stream permutation")
        if bj in rotated:
            tr.append("stream rotation")
        if ai in c.pruned:
            p = c.pruned[ai]
            tr.append(f"pruned units: {p.side.upper()} keeps {p.kept} of {p.width}")
        aligned[ai] = {k: c.b_params[bj][k] for k in keys if k in c.b_params[bj]}
        cos = _layer_cosine(c.corr.a_params[ai], aligned[ai], keys)
        release_pages()  # the pair is read: its mapped pages need not stay resident
        rows.append({"a": ai, "b": bj, "kind": la[i].kind, "op_a": la[i].op, "op_b": lb[j].op,
                     "shape": list(la[i].weight.shape), "params": la[i].n_params,
                     "transforms": tr, "cosine": cos})
    return rows, aligned


def _report(c: _Work) -> MatchResult:
    """The match report (plain data) with the correspondence it was read from."""
    pair_rows, c.corr.b_aligned = _pair_rows(c)
    transforms = list(c.transforms)
    for s in c.moved:
        what = "residual stream" if s.residual else "gated hidden units"
        transforms.append(f"{what} of B ({s.width} units, {len(s.members)} layers) "
                          "permuted to match A")
    for r in c.corr.rotations:
        if r.accepted:
            transforms.append(f"residual stream of B rotated back to A's (orthogonal Procrustes; "
                              f"{r.width} units, {len(r.members)} layers, fit cosine "
                              f"{r.fit:.4f} against {r.permutation:.4f} for the best signed "
                              "permutation)")
    n_perm = sum(1 for u in c.corr.units.values() if u.permuted)
    n_scale = sum(1 for u in c.corr.units.values() if u.rescaled)
    if n_perm:
        transforms.append(f"hidden units of B permuted to match A in {n_perm} layer(s)")
    if n_scale:
        transforms.append(f"per-unit scale of B normalised to A's in {n_scale} layer(s)")
    la, lb, pairs, (fixed_a, fixed_b) = c.corr.a_layers, c.corr.b_layers, c.pairs, c.fixed
    cov_a = _coverage([x for x in la if x.index not in fixed_a], [la[i] for i, _ in pairs])
    cov_b = _coverage([x for x in lb if x.index not in fixed_b], [lb[j] for _, j in pairs])
    unmatched = {"a": [x.index for k, x in enumerate(la)
                       if k not in {i for i, _ in pairs} and x.index not in fixed_a],
                 "b": [x.index for k, x in enumerate(lb)
                       if k not in {j for _, j in pairs} and x.index not in fixed_b]}
    statement = ("the two models have no parametric layer in common (coverage 0)" if not pairs
                 else f"{len(pairs)} layer pair(s) matched, covering {cov_a:.1%} of A's and "
                      f"{cov_b:.1%} of B's parameters")
    return MatchResult(c.a.name, c.b.name, pair_rows, {"a": cov_a, "b": cov_b}, unmatched,
                       transforms, limits=c.limits, statement=statement, excluded=c.excluded,
                       pruned=_pruned_rows(c), _correspondence=c.corr)


def _aligned_by_classes(class_matches: list, stream_pairs: list, chains: list, b_of: dict,
                        a_params: dict, b_params: dict) -> tuple[list, dict]:
    """Put B's streams in A's unit order by their classes' matchings, in place on ``b_params``
    (streams without a class by :func:`align_streams`), and say which junctions' matchings are
    the very ones their alignment would compute.

    A junction's class compares its units' incoming and outgoing weights with B's other axes put
    in A's order by the classes over them; when those are all streams, which this step has just
    permuted by the same matchings, that is what :func:`align_units` compares at the junction's
    first alignment (a transformer's feed-forward layers: their similarities, the largest
    products of the matching, are computed once).

    Returns
    -------
    streams : list of StreamAlignment
    given : dict of B's layer index to ndarray
        For :func:`align_units`.
    """
    by_stream = {cm.cls.stream: cm for cm in class_matches if cm.cls.stream is not None}
    pinned = {k for k, (sa, sb) in enumerate(stream_pairs) if sa.pinned or sb.pinned}
    streams = [permute_stream(sa, b_of, b_params, by_stream[k].perm)
               for k, (sa, _) in enumerate(stream_pairs) if k in by_stream and k not in pinned]
    streams += align_streams([pair for k, pair in enumerate(stream_pairs)
                              if k not in by_stream and k not in pinned],
                             b_of, a_params, b_params, {c.b for c in chains},
                             {c.b_next for c in chains})
    owners: dict = {}  # (layer, axis) -> the classes over it
    for cm in class_matches:
        for r in cm.cls.rows:
            owners.setdefault((r, "out"), []).append(cm.cls)
        for reader in cm.cls.columns:
            owners.setdefault((reader.layer, "in"), []).append(cm.cls)
    junction_classes = {cm.cls.rows[0]: cm for cm in class_matches
                        if len(cm.cls.rows) == 1 and cm.cls.stream is None and not cm.cls.span}
    given = {}
    for c in chains:
        cm = junction_classes.get(c.a)
        if (cm is None or c.followers or c.groups != 1 or c.next_groups != 1 or cm.cls.pruned
                or cm.blocks != (f"in:{c.a}", f"out:{c.a_next}")):
            continue
        others = owners.get((c.a, "in"), []) + owners.get((c.a_next, "out"), [])
        if all(o.stream is not None and not o.pinned for o in others):  # permuted above
            given[c.b] = cm.perm
    return streams, given


def _depth_note(pairs: list, la: list, lb: list) -> str:
    """Which of the deeper model's layers the shallower one's were put beside."""
    deep, side = (la, 0) if len(la) > len(lb) else (lb, 1)
    paired = {p[side] for p in pairs}
    dropped = [x.index for k, x in enumerate(deep) if k not in paired]
    name = "A" if side == 0 else "B"
    return (f"depth differs ({len(la)} layers in A, {len(lb)} in B): layers paired in order by "
            f"their weights, with gaps; {name}'s layers {ranges(dropped) or 'none'} have no "
            f"counterpart ({len(pairs)} paired)")


#: Layer kinds checked for fixed signal-processing constants.
_TRAINABLE = ("dense", "conv", "embedding", "linear")


def _attention_pairs(blocks_a: list, blocks_b: list, b_of: dict) -> list:
    """A's attention blocks that B has over the same matched layers, with the same heads."""
    out = []
    for x in blocks_a:
        y = next((y for y in blocks_b if b_of.get(x.q) == y.q and b_of.get(x.k) == y.k
                  and x.heads == y.heads), None)
        if y is None:
            continue
        same_v = x.v in b_of and b_of[x.v] == y.v
        same_o = same_v and x.o in b_of and b_of[x.o] == y.o
        out.append(dataclasses.replace(x, v=x.v if same_v else None, o=x.o if same_o else None))
    return out


def _coverage(all_layers: list[Layer], matched: list[Layer]) -> float:
    total = sum(x.n_params for x in all_layers)
    return float(sum(x.n_params for x in matched) / total) if total else 0.0


def _layer_transforms(a: Layer, b: Layer, folded: str | None) -> list[str]:
    tr = []
    for side, layer in (("A", a), ("B", b)):
        site = layer.sites.get("weight")
        if site is not None and site.to_stored == "transpose" and layer.kind == "dense":
            tr.append(f"transpose {side}")
        if layer.quant:
            tr.append(f"dequantize {side} ({layer.quant})")
        if layer.kind == "linear":
            tr.append(f"attributes {side}")
    if folded and not (a.sites if folded == "a" else b.sites):
        tr.append(f"bn_fold {folded.upper()}")
    if set(a.params) ^ set(b.params):
        tr.append("zero bias added")
    return tr


def _chains(pairs, la, lb, links_a, links_b, b_of, a_by, b_by, in_streams=frozenset()):
    """Permutable junctions present in both models, and the reasons others are not (not for
    A's layers in ``in_streams``: their units are a residual stream's)."""
    chains, limits = [], []
    # a depthwise conv follows the channels of the layer before it: not a junction of its own
    absorbed = {f for link in links_a.values() for f in link.followers}
    for i, j in pairs:
        ai, bj = la[i].index, lb[j].index
        if ai not in links_a or bj not in links_b or ai in absorbed:
            continue
        la_link, lb_link = links_a[ai], links_b[bj]
        if la_link.next is None or lb_link.next is None:
            reason = lb_link.reason or la_link.reason
            if (reason not in ("output of the model",)
                    and not reason.startswith("passes through Softmax")
                    and ai not in in_streams):
                limits.append(f"layer {ai}: units not aligned ({reason})")
            continue
        if (b_of.get(la_link.next) != lb_link.next or la_link.spatial != lb_link.spatial
                or la_link.next_groups != lb_link.next_groups
                or la_link.next_span != lb_link.next_span or la_link.groups != lb_link.groups):
            limits.append(f"layer {ai}: the layers reading its units differ between A and B")
            continue
        fa = [f for f in la_link.followers if f in a_by]
        fb = [f for f in lb_link.followers if f in b_by]
        followers = [(x, y) for x, y in zip(fa, fb) if b_of.get(x) == y]
        if len(followers) != len(fa) or len(fa) != len(fb):
            limits.append(f"layer {ai}: the per-channel layers after it (normalisation, "
                          "depthwise convolutions) differ between A and B")
            continue
        # a depthwise conv's groups are its channels: classes of one; a grouped conv's channels
        # and a GroupNormalization's stay within their groups: classes of the blocks both keep
        groups = math.lcm(la[i].groups, la_link.groups)
        if groups > 1 and la_link.spatial != 1:
            limits.append(f"layer {ai}: units not aligned (a grouped convolution read after a "
                          "flatten)")
            continue
        chains.append(Chain(ai, bj, la_link.next, lb_link.next, followers, lb_link.spatial,
                            homogeneous=lb_link.homogeneous, channels_last=la_link.channels_last,
                            groups=groups, next_groups=la_link.next_groups,
                            next_span=la_link.next_span))
    return chains, limits


def _flatten_orders(pairs, la, lb, links_a, links_b, b_of, b_params) -> int:
    """Put B's dense layers that read a flattened conv map in A's flatten order, in place.

    A channels-first flatten (PyTorch) gives the dense layer column ``u * spatial + s``, a
    channels-last one (Keras through tf2onnx) ``s * units + u``; the same weights in the two
    orders look unrelated. Returns how many layers were reordered.
    """
    done = 0
    for i, j in pairs:
        la_link, lb_link = links_a.get(la[i].index), links_b.get(lb[j].index)
        if (la_link is None or lb_link is None or la_link.next is None or lb_link.next is None
                or b_of.get(la_link.next) != lb_link.next or la_link.spatial != lb_link.spatial
                or la_link.channels_last == lb_link.channels_last):
            continue
        nxt = b_params[lb_link.next]
        nxt["weight"] = to_layout(nxt["weight"], lb[j].units, lb_link.spatial,
                                  la_link.channels_last)
        done += 1
    return done
