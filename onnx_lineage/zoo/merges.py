"""Merges in a forest: a model made from several of the others gets each of them as a parent.

A model M that lies between two of its relatives X and Y (``d(X, M) + d(M, Y) <= BETWEEN *
d(X, Y)`` in aligned-weight distance: a linear or spherical average lies on or near the segment
between its parents), or has two relatives the screening did not compare, is attributed (:func:`onnx_lineage.analyses.attribution.attribute`) to its
:data:`CANDIDATES` nearest relatives. Only an attribution that explains M to rounding by a
linear or SLERP average with every share positive makes it a merge: the same algebra read the
other way (a parent as the merge and the other parent) needs a negative share, and a fine-tune
of one model is no combination of its relatives to rounding. The forest is then mended: the
merge hangs from its largest parent, and a parent that hung from the merge hangs from nothing
(it becomes a root) unless the forest gave it another parent.

Merges of task vectors (task arithmetic, TIES, DARE) need their base and do not lie between
their parents: ``attribute --base`` reads them; ``tree`` does not look for them yet.
"""

from __future__ import annotations

from onnx_lineage.analyses.attribution import attribute
from onnx_lineage.errors import LineageError

#: Most candidate parents a model is attributed to.
CANDIDATES = 4
#: How far off the segment between two relatives a model may lie to be tried as their merge.
BETWEEN = 1.1
#: The recipes ``tree`` looks for.
RECIPES = ("linear", "slerp")


def merge_edges(outcomes: list, loaded: dict, seed: int) -> list[dict]:
    """The merges among the models (module docstring).

    Parameters
    ----------
    outcomes : list of PairOutcome
        Every exact test (``related`` and ``length`` read).
    loaded : dict of str to LoadedModel

    Returns
    -------
    list of dict
        Per merged model: ``child``, ``recipe``, ``statement`` and ``parents`` [{``parent``,
        ``share``, ``interval``}], largest share first.
    """
    dist: dict[tuple, float] = {}
    for o in outcomes:
        if o.related:
            dist[(o.a, o.b)] = dist[(o.b, o.a)] = o.length
    near: dict[str, list] = {}
    for (a, b), d in dist.items():
        near.setdefault(a, []).append((d, b))
    out = []
    for m in sorted(near):
        rel = [x for _, x in sorted(near[m])]
        if not any((x, y) not in dist or dist[(x, m)] + dist[(m, y)] <= BETWEEN * dist[(x, y)]
                   for i, x in enumerate(rel) for y in rel[i + 1:]):
            continue  # no two relatives it lies between (or that were not compared)
        candidates = rel[:CANDIDATES]
        try:
            r = attribute(loaded[m], [loaded[x] for x in candidates], seed=seed)
        except LineageError:
            continue
        used = [(x, s) for x, s in zip(candidates, r.parents) if s.share is not None
                and abs(s.share) > 0.01]  # r.parents in the order of the candidates
        if r.recipe in RECIPES and len(used) >= 2 and all(s.share > 0 for _, s in used):
            out.append({"child": m, "recipe": r.recipe, "statement": r.statement, "parents": [
                {"parent": x, "share": s.share, "interval": s.interval}
                for x, s in sorted(used, key=lambda xs: -xs[1].share)]})
    return out


def mend(directed: list, merges: list, outcomes: list) -> tuple[list, list]:
    """The forest's edges with each merge hung from its largest parent, and the parents that hung
    from it cut loose; ``(directed, roots)``."""
    pair = {}
    for o in outcomes:
        pair[(o.a, o.b)] = pair[(o.b, o.a)] = o
    edges = {c: (p, o) for p, c, o in directed}
    for m in merges:
        child, parents = m["child"], [p["parent"] for p in m["parents"]]
        for p in parents:
            if edges.get(p, (None,))[0] == child:
                del edges[p]  # read the wrong way round: the parent hung from its merge
        edges[child] = (parents[0], pair[(parents[0], child)])
    names = {x for p, c, _ in directed for x in (p, c)}
    roots = sorted(x for x in names if x not in edges)
    return [(p, c, o) for c, (p, o) in edges.items()], roots
