"""``tree``: the lineage forest over many models.

1. screening: data-free fingerprints of every model's first layer give candidate pairs
   (:mod:`.fingerprint`), so exact tests grow with the candidates, not with n^2;
2. exact determination of every candidate pair (weight evidence and loss barrier), with the
   direction evidence (:mod:`.direction`);
3. the minimum spanning forest over related pairs on the distance of their aligned weights,
   oriented parent to child by the direction evidence and the clock (:mod:`.forest`); each child
   then hangs from the relative whose own change it carries (:mod:`.inheritance`: a child, not a
   sibling); a note wherever the evidence cannot tell a chain from a star;
4. merges (:mod:`.merges`): the models made from several others, found from the aligned
   weights, the forest then drawn again without them and each hung from its largest parent, its
   other parents and their shares in ``merges``;
5. closeness of every kept edge, as its weight.

Models that score different numbers of classes (a transfer child with a new head) are compared
only where that means something: their losses are not weighed against each other, the forest's
notes say so for every such edge, and its closeness is left out, or measured on the labels both
have when asked (``label_space="shared"``). Labels in the data outside a model's classes leave
its loss unmeasured, and a note says so.

Steps 2 and 5 run on an executor: this process, or Ray tasks (:mod:`.executors`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from onnx_lineage import memory
from onnx_lineage.analyses.closeness import closeness
from onnx_lineage.analyses.determination import determine, no_units
from onnx_lineage.data import Dataset, digits
from onnx_lineage.errors import LineageError, ModelError
from onnx_lineage.evidence import data_free
from onnx_lineage.evidence.verdict import decide
from onnx_lineage.matching import match
from onnx_lineage.model.footprint import (dequantized_bytes, determine_footprint,
                                          inspect_footprint)
from onnx_lineage.model.loading import LoadedModel, load_model
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.results import Result
from onnx_lineage.zoo.direction import (RESCALED, clock_signal, direction, model_outputs,
                                        model_stats, rescaling, signal_weights, weak_evidence)
from onnx_lineage.zoo.executors import executor
from onnx_lineage.zoo.fingerprint import candidates, fingerprint
from onnx_lineage.zoo.forest import (DECIDED, INHERITANCE_LEVEL, PairOutcome, aligned_distance,
                                     edge_confidence, edge_votes, evidence_clock, follow_clock,
                                     follow_inheritance, mermaid, orient, shape_notes,
                                     signal_clock, spanning_forest)
from onnx_lineage.zoo.inheritance import SHARED_RANK, displacement_share
from onnx_lineage.zoo.merges import attach, merge_edges
from onnx_lineage.zoo.inheritance import evidence as inheritance_evidence


@dataclass(frozen=True)
class TreeResult(Result):
    """The lineage forest.

    Attributes
    ----------
    edges : list of dict
        ``parent``, ``child``, ``closeness``, ``similarity``, ``distance`` (of the aligned
        weights, relative), ``p_value`` (of the exact tests that joined them, at
        ``alpha_per_test``), ``confidence`` (posterior of the direction), ``direction``
        (``decided`` from :data:`~.forest.DECIDED` up, else ``undecided``), ``evidence``,
        ``classes`` {``parent``, ``child``} (how many each scores; None: not a classifier).
    roots : list of str
        One per tree (models related to nothing are roots of their own).
    alpha, alpha_per_test : float
        The family-wise level, and the level of each exact test (``alpha`` over their number).
    related : list of dict
        Every pair the exact tests found related: ``a``, ``b``, ``distance``, ``similarity``.
    stats : dict of str to dict
        Per model, the statistics of the weak direction signals (:class:`.direction.ModelStats`).
    notes : list of str
        Where the evidence cannot tell a chain from a star, and checkpoints of one run.
    merges : list of dict
        Models made from several others (:func:`.merges.merge_edges`): ``child``, ``recipe``,
        ``statement`` and ``parents`` [{``parent``, ``share``, ``interval``}]; the child's
        tree edge is from the first of them.
    """

    models: list
    edges: list
    roots: list
    candidates: int
    exact_tests: int
    all_pairs: int
    related_pairs: int
    failed: list
    executor: str
    mermaid: str
    seconds: float
    alpha: float = 0.01
    alpha_per_test: float = 0.01
    related: list = None
    stats: dict = None
    notes: list = None
    merges: list = None


def _name_models(paths: list[Path]) -> dict[str, Path]:
    """File stems as names; when two files share a stem, every model is named by its path
    relative to the folders' common root, without the suffix (``mlp/parent``)."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return dict(zip(stems, paths))
    resolved = [p.resolve() for p in paths]
    root = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    return {str(p.relative_to(root).with_suffix("")): orig for p, orig in zip(resolved, paths)}


def collect(inputs: list[str | Path]) -> dict[str, Path]:
    """ONNX files named on the command line, or found (recursively) in the folders named."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(p.rglob("*.onnx"))
        elif p.exists():
            paths.append(p)
        else:
            raise ModelError(f"{p}: no such file or folder")
    if len(paths) < 2:
        raise LineageError(f"tree needs at least two models, found {len(paths)}")
    return _name_models(paths)


def _pair_task(name_a: str, bytes_a: bytes, name_b: str, bytes_b: bytes, data: Dataset, seed: int,
               device: str, alpha: float = 0.01) -> PairOutcome:
    """Exact test of one pair (runs in this process or in a Ray worker)."""
    try:
        a = LoadedModel(onnx.load_from_string(bytes_a), Path(name_a))
        b = LoadedModel(onnx.load_from_string(bytes_b), Path(name_b))
        rng = np.random.default_rng(seed)
        m = match(a, b, rng=rng)
        need = determine_footprint(a.proto, b.proto, len(data), sweep=False)
        note = None
        if need.total <= memory.budget():
            det = determine(a, b, data, seed=seed, device=device, match_result=m, copies=0,
                            alpha=alpha, rng=rng)
            related, p_value, adapter = det.related, det.p_value, adapter_rank(det.difference)
        else:  # the data-free tests are valid alone; the function test's session does not fit
            v = decide(data_free(m, alpha).tests, alpha, no_units(m))
            related, p_value, adapter = v.related, v.p_value, None
            note = (f"{name_a} and {name_b}: the data-free tests only (the function test's "
                    f"session needs about {memory.describe(need.total)}, over the memory "
                    f"budget of {memory.describe(memory.budget())})")
        d = direction(m, name_a, name_b) if m.pairs else None
        weight = whole_cosine(m)
        return PairOutcome(name_a, name_b, related, float(weight),
                           0.0 if d is None else d.strong, () if d is None else d.evidence,
                           distance=aligned_distance(m), rescaled=rescaling(m) > RESCALED,
                           p_value=p_value, adapter=adapter, note=note)
    except LineageError as exc:
        return PairOutcome(name_a, name_b, None, 0.0, 0.0, (), error=str(exc))


def adapter_rank(difference: dict | None) -> int | None:
    """The rank of a merged adapter that ``determine``'s ``difference`` found, else None."""
    return difference["rank"] if difference and difference["adapter"] else None


def shares_of(loaded: dict, seed: int):
    """``share(q, p, c, shared_rank=SHARED_RANK)``: :func:`.inheritance.displacement_share` of
    ``p`` and ``c`` from ``q``, each aligned to ``q`` once (for every reading), its units
    permuted but not rescaled (a unit's change of norm is part of its displacement). None where
    a matching fails or finds no layers, or where the units are grossly rescaled against ``q``'s
    (:func:`.direction.rescaling`: an obfuscated copy, whose displacement is the rescaling)."""
    aligned: dict = {}

    def to(q: str, x: str):
        if (q, x) not in aligned:
            try:
                m = match(loaded[q], loaded[x], rng=np.random.default_rng(seed), rescale=False)
                ok = m.pairs and rescaling(m) <= RESCALED
                corr = m.correspondence
                aligned[(q, x)] = (corr.a_params, corr.b_aligned) if ok else None
            except LineageError:
                aligned[(q, x)] = None
        return aligned[(q, x)]

    shares: dict = {}

    def share(q: str, p: str, c: str, shared_rank: int = SHARED_RANK) -> float | None:
        key = (q, p, c, shared_rank)
        if key not in shares:
            qp, qc = to(q, p), to(q, c)
            shares[key] = (None if qp is None or qc is None
                           else displacement_share(qp[0], qp[1], qc[1], seed, shared_rank))
        return shares[key]

    return share


def label_notes(edges: list[dict], stats: dict, data: Dataset, label_space: str) -> list[str]:
    """Plain words where label spaces get in the way: each edge whose models score different
    numbers of classes, and each model whose classes the data's labels exceed.

    Parameters
    ----------
    edges : list of dict
        The forest's edges (``parent``, ``child``, ``classes``).
    stats : dict of str to ModelStats
        Per model, its ``classes``.
    """
    notes = []
    for e in edges:
        p, c = e["classes"]["parent"], e["classes"]["child"]
        if p is not None and c is not None and p != c:
            how = (f"closeness on the {min(p, c)} labels both have" if label_space == "shared"
                   else "closeness not measured (--shared-labels measures it on the "
                        f"{min(p, c)} labels both have)")
            notes.append(f"{e['parent']} scores {p} classes and {e['child']} {c}: their label "
                         f"spaces differ; their losses are not compared for the direction, "
                         f"{how}")
    if data.y is not None and data.y.size:
        top = int(data.y.max())
        for name in sorted(stats):
            k = stats[name].classes
            if k is not None and (top >= k or int(data.y.min()) < 0):
                notes.append(f"{name} scores {k} classes, but the labels of "
                             f"{data.source or 'the data'} run from {int(data.y.min())} to {top}: "
                             "its loss is not measured")
    return notes


def _too_large(loaded: dict) -> list[str]:
    """Take out of ``loaded`` (in place) the models whose quantized weights, dequantized as the
    analyses hold them, alone exceed the memory budget; a note for each."""
    limit, out = memory.budget(), []
    for name in sorted(loaded):
        need = dequantized_bytes(loaded[name].proto)
        if need > limit:
            del loaded[name]
            out.append(f"{name} left out: its quantized weights dequantized need about "
                       f"{memory.describe(need)}, over the memory budget of "
                       f"{memory.describe(limit)}")
    return out


def _budget_notes(loaded: dict) -> list[str]:
    """Models no onnxruntime session of which fits the memory budget: their loss and the
    closeness of their edges are not measured."""
    limit = memory.budget()
    heavy = {n: inspect_footprint(m.proto).total for n, m in sorted(loaded.items())}
    return [f"{n}: a session of it needs about {memory.describe(b)}, over the memory budget of "
            f"{memory.describe(limit)}: its loss and the closeness of its edges are not measured"
            for n, b in heavy.items() if b > limit]


def hubness(outcomes: list[PairOutcome]) -> dict[str, float]:
    """For every model, how many related models have it as their most similar relative.

    A parent from which children radiate in different directions is each first child's nearest
    relative; a model inside a trajectory or a ladder is the nearest relative of one or two.
    Ties share the vote.
    """
    best: dict[str, tuple[float, list[str]]] = {}
    for o in outcomes:
        if not o.related:
            continue
        for x, y in ((o.a, o.b), (o.b, o.a)):
            w, who = best.get(x, (-np.inf, []))
            if o.weight > w + 1e-12:
                best[x] = (o.weight, [y])
            elif abs(o.weight - w) <= 1e-12:
                who.append(y)
    hub: dict[str, float] = {}
    for _, (_, who) in best.items():
        for y in who:
            hub[y] = hub.get(y, 0.0) + 1.0 / len(who)
    return hub


def whole_cosine(m) -> float:
    """Cosine of all matched parameters after alignment, layers weighted by size: the edge weight
    of the spanning forest (unlike the unit similarity on shared non-zero weights, it keeps falling
    with every modification, so a child sits closer to its parent than to its grandparent)."""
    total = sum(p["params"] for p in m.pairs)
    return float(sum(p["cosine"] * p["params"] for p in m.pairs) / total) if total else 0.0


def _closeness_task(name_a: str, bytes_a: bytes, name_b: str, bytes_b: bytes, data: Dataset,
                    seed: int, device: str, label_space: str = "same") -> float | None:
    try:
        a = LoadedModel(onnx.load_from_string(bytes_a), Path(name_a))
        b = LoadedModel(onnx.load_from_string(bytes_b), Path(name_b))
        return closeness(a, b, data, seed=seed, device=device, points=128,
                         label_space=label_space).closeness
    except LineageError:
        return None


def _model_stats(names: list, loaded: dict, layers: dict, data: Dataset, seed: int) -> dict:
    """Per model: its weight statistics, and its loss and outputs on ``data``."""
    stats = {}
    for n in names:
        loss, classifier, classes = model_outputs(loaded[n], data, seed)
        stats[n] = dataclasses.replace(model_stats(layers[n]), loss=loss, classifier=classifier,
                                       classes=classes)
    return stats


def _edge(p: str, c: str, o: PairOutcome, clo, q: str | None, stats: dict, weights: dict,
          share) -> dict:
    """One edge parent ``p`` -> child ``c`` of the forest (``q``: ``p``'s own parent), with its
    direction's confidence and evidence."""
    conf = edge_confidence(p, c, o, stats, weights)
    carried = None if q is None else share(q, p, c)
    return {"parent": p, "child": c, "closeness": clo, "similarity": o.weight,
            "distance": o.distance, "p_value": o.p_value, "adapter": o.adapter,
            "confidence": round(conf, 3),
            "classes": {"parent": stats[p].classes, "child": stats[c].classes},
            "direction": "decided" if conf >= DECIDED else "undecided",
            "evidence": list(o.evidence) + weak_evidence(p, c, edge_votes(p, c, o, stats), weights)
            + ([] if carried is None else [inheritance_evidence(q, p, c, carried)])}


def _clocks(stats: dict, weights: dict) -> tuple:
    """The clock that corrects the tree's edges and the one that lets a child move down to a
    sibling: one signal where it held on every recipe of the fitted forests; else all the
    evidence of an edge, correcting it from CLOCK_LEVEL and moving a child down where the
    evidence puts that sibling first."""
    trusted = clock_signal()
    if trusted:
        clock = signal_clock(stats, trusted)
        return clock, clock
    return evidence_clock(stats, weights), evidence_clock(stats, weights, INHERITANCE_LEVEL)


def _forest(names: list, outcomes: list, quantized: frozenset, stats: dict, weights: dict,
            share) -> tuple[list, list]:
    """The spanning forest over ``names`` (the related pairs among them), oriented by the
    direction evidence and the clock, each child moved to the relative whose change it carries:
    ``(directed, roots)``."""
    among = [o for o in outcomes if o.a in names and o.b in names]
    kept = spanning_forest(names, among, quantized)
    directed, roots = orient(names, kept, hubness(among), stats, weights)
    correct, move_down = _clocks(stats, weights)
    directed, roots = follow_clock(directed, roots, among, stats, correct)
    return follow_inheritance(directed, among, share, stats, quantized, move_down), roots


def _merged(names: list, outcomes: list, loaded: dict, seed: int, quantized: frozenset,
            stats: dict, weights: dict, share, step) -> tuple:
    """The forest with every merge (:mod:`.merges`) hung from its parents: the forest over all
    models gives the directions that may tell a base from its merge; the merges found, it is
    drawn again without them, and each merge hangs from its largest parent (the others are in
    ``merges``). ``(directed, roots, merges, notes)``: the notes say where no merge was looked
    for."""
    directed, roots = _forest(names, outcomes, quantized, stats, weights, share)
    step("merges: is any model made from several of its relatives")
    decided = [(p, c, o) for p, c, o in directed
               if edge_confidence(p, c, o, stats, weights) >= DECIDED]
    merges, notes = merge_edges(outcomes, loaded, seed, decided, quantized)
    if not merges:
        return directed, roots, merges, notes
    made = {m["child"] for m in merges}
    directed, roots = _forest([n for n in names if n not in made], outcomes, quantized, stats,
                              weights, share)
    return attach(directed, roots, merges, outcomes) + (merges, notes)


def tree(models: list[str | Path], data: Dataset | None = None, *, seed: int = 0,
         device: str = "auto", ray: str | None = None, screen: float = 0.3,
         with_closeness: bool = True, progress=None, alpha: float = 0.01,
         label_space: str = "same") -> TreeResult:
    """The lineage forest over ``models`` (files, or folders searched for ``*.onnx``).

    Parameters
    ----------
    data : Dataset, optional
        Default: the built-in digits. Pairs whose models the data cannot feed are reported in
        ``failed`` and treated as unrelated.
    ray : str, optional
        Ray address (``auto``, ``local``, ``ray://...``): run the pairwise work as Ray tasks.
    screen : float
        Fraction of first-layer units that must collide for a pair to be tested exactly.
    alpha : float
        Family-wise level: each exact test runs at ``alpha`` divided by the number of them
        (Bonferroni), so the chance that any unrelated pair is joined is at most ``alpha``.
    label_space : {"same", "shared"}
        An edge between models that score different numbers of classes: ``same`` leaves its
        closeness out (None), ``shared`` measures it on the labels both have.
    """
    t0 = time.perf_counter()
    step = progress or (lambda name: None)
    paths = collect(models)
    data = digits() if data is None else data
    step(f"fingerprinting {len(paths)} models")
    loaded = {name: load_model(p) for name, p in paths.items()}
    left_out = _too_large(loaded)
    if len(loaded) < 2:
        raise LineageError("tree needs at least two models that fit the memory budget: "
                           + "; ".join(left_out))
    layers = {name: extract_layers(m.proto) for name, m in loaded.items()}
    fps = [f for f in (fingerprint(n, layers[n]) for n in loaded) if f]
    cand = candidates(fps, screen)
    ex = executor(ray)
    blobs = {n: ex.share(m.proto.SerializeToString()) for n, m in loaded.items()}
    shared_data = ex.share(data)
    step(f"exact tests of {len(cand)} candidate pairs")
    # Bonferroni over the exact tests: the chance that any unrelated pair is joined is <= alpha
    per_test = alpha / max(len(cand), 1)
    outcomes = ex.map(_pair_task, [(a, blobs[a], b, blobs[b], shared_data, seed, device,
                                    per_test) for a, b in sorted(cand)])
    names = sorted(loaded)
    quantized = frozenset(n for n in names if any(x.quant for x in layers[n]))
    step(f"weight statistics and loss of {len(names)} models")
    stats = _model_stats(names, loaded, layers, data, seed)
    weights = signal_weights()
    share = shares_of(loaded, seed)
    step("the forest: directions, and which relative each child carries the change of")
    directed, roots, merges, merge_notes = _merged(names, outcomes, loaded, seed, quantized,
                                                   stats, weights, share, step)
    parent_of = {c: p for p, c, _ in directed}
    closeness_values = [None] * len(directed)
    if with_closeness and directed:
        step(f"closeness of {len(directed)} edges")
        closeness_values = ex.map(_closeness_task, [(p, blobs[p], c, blobs[c], shared_data, seed,
                                                     device, label_space)
                                                    for p, c, _ in directed])
    edges = [_edge(p, c, o, clo, parent_of.get(p), stats, weights, share)
             for (p, c, o), clo in zip(directed, closeness_values)]
    failed = [{"a": o.a, "b": o.b, "error": o.error} for o in outcomes if o.error]
    n = len(names)
    related = [{"a": o.a, "b": o.b, "distance": o.distance, "similarity": o.weight}
               for o in outcomes if o.related]
    return TreeResult(models=names, edges=edges, roots=sorted(roots), candidates=len(cand),
                      exact_tests=len(outcomes), all_pairs=n * (n - 1) // 2,
                      related_pairs=len(related), failed=failed,
                      executor=ex.name, mermaid=mermaid(edges, sorted(roots), merges),
                      seconds=time.perf_counter() - t0, alpha=alpha,
                      alpha_per_test=per_test, related=related,
                      stats={k: v.to_dict() for k, v in stats.items()},
                      notes=label_notes(edges, stats, data, label_space)
                      + shape_notes(edges, related) + merge_notes
                      + [o.note for o in outcomes if o.note] + _budget_notes(loaded)
                      + left_out,
                      merges=merges)
