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

Merges of task vectors (task arithmetic, TIES, DARE: ``M = Q + sum_i w_i (A_i - Q)``) need
their base and need not lie between their parents. Seen from the base Q, M's task vector leans
toward each of its parents' (the cosine of the angle at Q, from the three aligned distances by
the law of cosines: 0.7 for an even merge of two), while fine-tunes of Q move in near-orthogonal
directions. The algebra alone cannot tell the base from the merge (with the weights summing
over 1, ``Q`` is as much an affine combination of ``M`` and the ``A_i`` as ``M`` is of ``Q`` and
the ``A_i``), so the forest's decided directions do: a model that no average explains is
attributed, with a base Q among its relatives that the forest put above at least two others
leaning toward M by :data:`LEANS` or more (the farthest such Q first) and not below M itself, to
those others; a task-arithmetic, TIES or DARE attribution with two or more positive shares makes
it a merge of them from Q. Where the forest's directions are undecided, none is looked for.
"""

from __future__ import annotations

from onnx_lineage.analyses.attribution import attribute
from onnx_lineage.errors import LineageError

#: Most candidate parents a model is attributed to.
CANDIDATES = 4
#: How far off the segment between two relatives a model may lie to be tried as their merge.
BETWEEN = 1.1
#: The recipes ``tree`` looks for: averages, and merges of task vectors from a base.
RECIPES = ("linear", "slerp")
TASK_RECIPES = ("task arithmetic", "ties", "dare")
#: Least cosine, at a candidate base, between a candidate parent's task vector and the model's.
LEANS = 0.3


def merge_edges(outcomes: list, loaded: dict, seed: int, directed: list = ()) -> list[dict]:
    """The merges among the models (module docstring).

    Parameters
    ----------
    outcomes : list of PairOutcome
        Every exact test (``related`` and ``length`` read).
    loaded : dict of str to LoadedModel
    directed : list of (parent, child, PairOutcome)
        The forest's edges whose direction is decided, which say which model may be a base
        (none: no merge of task vectors is looked for).

    Returns
    -------
    list of dict
        Per merged model: ``child``, ``recipe``, ``statement``, ``base`` (None for an average)
        and ``parents`` [{``parent``, ``share``, ``interval``}], largest share first.
    """
    dist: dict[tuple, float] = {}
    for o in outcomes:
        if o.related:
            dist[(o.a, o.b)] = dist[(o.b, o.a)] = o.length
    near: dict[str, list] = {}
    for (a, b), d in dist.items():
        near.setdefault(a, []).append((d, b))
    up = {c: p for p, c, _ in directed}
    out = []
    for m in sorted(near):
        rel = [x for _, x in sorted(near[m])]
        found = (_average(m, rel, dist, loaded, seed)
                 or _task_vectors(m, rel, dist, _above(up), loaded, seed))
        if found:
            out.append(found)
    return out


def _average(m: str, rel: list, dist: dict, loaded: dict, seed: int) -> dict | None:
    """``m`` as a linear or SLERP average of its nearest relatives ``rel``, or None."""
    if not any((x, y) not in dist or dist[(x, m)] + dist[(m, y)] <= BETWEEN * dist[(x, y)]
               for i, x in enumerate(rel) for y in rel[i + 1:]):
        return None  # no two relatives it lies between (or that were not compared)
    return _attributed(m, rel[:CANDIDATES], None, RECIPES, loaded, seed)


def _above(up: dict):
    """``above(x)``: the models above ``x`` in the forest whose child-to-parent map is ``up``."""
    def above(x: str) -> set:
        seen = set()
        while x in up and up[x] not in seen:
            x = up[x]
            seen.add(x)
        return seen
    return above


def _task_vectors(m: str, rel: list, dist: dict, above, loaded: dict, seed: int) -> dict | None:
    """``m`` as a merge of task vectors from a base among ``rel`` (module docstring), or None;
    ``above(x)``: the models above ``x`` in the forest."""
    for q in sorted(rel, key=lambda x: -dist[(x, m)]):
        if m in above(q):
            continue
        leaning = [a for a in rel if a != q and (q, a) in dist and q in above(a)
                   and _cosine_at(dist[(q, a)], dist[(q, m)], dist[(a, m)]) >= LEANS]
        if len(leaning) >= 2:
            found = _attributed(m, leaning[:CANDIDATES], q, TASK_RECIPES, loaded, seed)
            if found:
                return found
    return None


def _cosine_at(qa: float, qm: float, am: float) -> float:
    """The cosine of the angle at Q of the triangle Q, A, M with these side lengths."""
    return (qa * qa + qm * qm - am * am) / (2 * qa * qm) if qa > 0 and qm > 0 else 0.0


def _attributed(m: str, candidates: list, base: str | None, recipes: tuple, loaded: dict,
                seed: int) -> dict | None:
    """``m`` attributed to ``candidates`` (from ``base``): a merge when the recipe is one of
    ``recipes`` with two or more positive shares, else None."""
    try:
        r = attribute(loaded[m], [loaded[x] for x in candidates],
                      None if base is None else loaded[base], seed=seed)
    except LineageError:
        return None
    used = [(x, s) for x, s in zip(candidates, r.parents) if s.share is not None
            and abs(s.share) > 0.01]  # r.parents in the order of the candidates
    if r.recipe not in recipes or len(used) < 2 or any(s.share <= 0 for _, s in used):
        return None
    return {"child": m, "recipe": r.recipe, "statement": r.statement, "base": base, "parents": [
        {"parent": x, "share": s.share, "interval": s.interval}
        for x, s in sorted(used, key=lambda xs: -xs[1].share)]}


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
