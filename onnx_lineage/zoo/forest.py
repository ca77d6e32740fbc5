"""The lineage forest: a minimum spanning forest over related pairs, oriented parent to child.

Edges join pairs found related by the exact test, weighted by the distance between their aligned
weights (:func:`~onnx_lineage.zoo.tree.aligned_distance`). Fine-tuning moves a model along its own
direction: a child sits near its parent, siblings trained apart sit about sqrt(2) times farther
from each other, and a grandchild farther still, so the minimum spanning tree keeps parent-child
edges and drops the others (a star stays a star, a chain a chain). Each tree's root is the model
that best agrees with the direction evidence of its edges: the strong evidence first
(quantization, sparsity: a copy is made from its source), then the weak signals
(:mod:`.direction`), weighed as fitted on forests of known lineage; edges point away from it.

Then the clock (:func:`follow_clock`). Where one signal held on every edge of every training
recipe of the fitted forests (:func:`.direction.clock_signal`), it is the clock: trained with
cross-entropy, Adam and no weight decay, a classifier's output layer keeps growing, and on such
forests the child's was always the larger. Adversarial training, weight decay and label smoothing
shrink it, so over the recipes of ``benchmarks/forests.py`` no signal is a clock; the clock is then
all the evidence of an edge, read where its posterior is at least :data:`CLOCK_LEVEL`
(:func:`evidence_clock`). Where an edge of the oriented tree points against the clock the tree
is wrong there (two siblings trained alike sit closer to each other than to their parent, and the
spanning tree hung one below the other): the child hangs instead from its nearest related model
that the clock puts before it, or, with none, becomes its tree's root.

Last, inheritance (:func:`follow_inheritance`): distances cannot tell a child from a sibling when
siblings were trained alike, nor a grandchild that trained back towards its grandparent's task
from a sibling of its parent; whether the model carries its supposed parent's own change
(:mod:`.inheritance`) can. Each child moves up to its grandparent or down to a sibling by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onnx_lineage.zoo.direction import votes
from onnx_lineage.zoo.inheritance import CHILD_SHARE

#: Log-odds of one item of strong evidence (quantization, sparsity): near certain.
STRONG_LOG_ODDS = math.log(0.99 / 0.01)
#: An edge's direction is called decided from this posterior up.
DECIDED = 0.75
#: Edges this short join copies of one model (re-exports, permuted or rescaled copies).
COPY_DISTANCE = 1e-4


@dataclass(frozen=True)
class PairOutcome:
    """Exact test of one candidate pair (``direction`` > 0: ``a`` looks like the parent).

    ``distance``: relative distance of the aligned weights (None: not measured; the forest then
    uses ``1 - weight``). ``rescaled``: B's hidden units are grossly rescaled against A's
    (:func:`.direction.rescaling`), so their weight norms say nothing of direction.
    ``p_value``: the exact tests' combined p-value (None: they did not run). ``adapter``: the
    rank of B - A where every weight matrix that changed changed by a low rank (a merged adapter,
    :mod:`onnx_lineage.analyses.lowrank`), else None."""

    a: str
    b: str
    related: bool | None
    weight: float
    direction: float
    evidence: tuple
    error: str | None = None
    distance: float | None = None
    rescaled: bool = False
    p_value: float | None = None
    adapter: int | None = None
    note: str | None = None

    @property
    def length(self) -> float:
        return 1.0 - self.weight if self.distance is None else self.distance


class _UnionFind:
    def __init__(self, items):
        self.parent = {x: x for x in items}

    def find(self, x):
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[rb] = ra
        return True


def spanning_forest(models: list[str], outcomes: list[PairOutcome],
                    leaves: frozenset = frozenset()) -> list[PairOutcome]:
    """Related pairs kept by Kruskal's minimum spanning forest on their distances (ties broken
    by name), pairs whose difference is a merged adapter's first, the lowest rank first: adapters
    trained alike from one parent can sit closer to each other than to it, but the difference
    of two adapters has the rank of both (a rank-4 and a rank-8 adapter of one parent differ by
    rank 12), so each hangs from the model it differs from by least.

    Models in ``leaves`` (quantized copies: nothing is trained from an int8 file) are attached
    last, each to its nearest related model outside ``leaves`` (by distance alone: its rounding
    can read as a low rank against its source's parent).
    """
    uf = _UnionFind(models)
    kept = []
    related = sorted((o for o in outcomes if o.related), key=lambda o: (o.length, o.a, o.b))
    for o in sorted(related, key=lambda o: (o.adapter is None, o.adapter or 0)):  # stable
        if o.a not in leaves and o.b not in leaves and uf.union(o.a, o.b):
            kept.append(o)
    for leaf in sorted(leaves):
        best = next((o for o in related if leaf in (o.a, o.b)
                     and (o.b if o.a == leaf else o.a) not in leaves), None)
        if best is None:
            best = next((o for o in related if leaf in (o.a, o.b)), None)
        if best is not None and uf.union(best.a, best.b):
            kept.append(best)
    return kept


def orient(models: list[str], edges: list[PairOutcome], centrality: dict | None = None,
           stats: dict | None = None, weights: dict | None = None
           ) -> tuple[list[tuple[str, str, PairOutcome]], list[str]]:
    """Directed edges (parent, child, outcome) and the roots (one per tree, isolated models too).

    A tree's root is the model whose orientation agrees best with the strong direction evidence
    (``direction``: quantization, sparsity); among equals, the one the weak signals agree with
    best (:func:`.direction.votes` on ``stats``, each weighed by ``weights``, its log-odds);
    then the most central one (``centrality``, higher is more central: see ``tree.hubness``).
    """
    centrality = centrality or {}
    adj: dict[str, list[PairOutcome]] = {m: [] for m in models}
    for e in edges:
        adj[e.a].append(e)
        adj[e.b].append(e)
    seen, directed, roots = set(), [], []
    for start in sorted(models):
        if start in seen:
            continue
        comp, stack = [], [start]
        seen.add(start)
        while stack:
            x = stack.pop()
            comp.append(x)
            for e in adj[x]:
                y = e.b if e.a == x else e.a
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        root = max(sorted(comp), key=lambda r: (
            round(_agreement(r, adj), 6), round(_agreement(r, adj, True, stats, weights), 6),
            round(centrality.get(r, 0.0), 6)))
        roots.append(root)
        directed += _away_from(root, adj)
    return directed, roots


#: The evidence clock (:func:`evidence_clock`) corrects an edge from this posterior up.
CLOCK_LEVEL = 0.9
#: ... and lets a child move down to a sibling (:func:`follow_inheritance`) where the evidence
#: puts that sibling first at all (the share decides between sibling and child; the evidence
#: only which of the two came first).
INHERITANCE_LEVEL = 0.5


def signal_clock(stats: dict | None, signal: str = "head"):
    """A clock from one weak signal: ``clock(x, y, e)`` is its vote on ``x -> y`` across edge
    ``e`` (:func:`edge_votes`): +1, ``x`` before ``y``; -1, after; 0, it cannot tell. The
    ``head`` signal (the parent's output layer has the smaller norm: cross-entropy without
    weight decay keeps growing it) reads only where it can vote (same layers, float, unpruned,
    not rescaled, not copies)."""
    return lambda x, y, e: edge_votes(x, y, e, stats).get(signal, 0)


def evidence_clock(stats: dict | None, weights: dict | None, level: float = CLOCK_LEVEL):
    """A clock from all the evidence of an edge (:func:`edge_confidence`): +1 where it puts
    ``x`` before ``y`` with a posterior of at least ``level``, -1 where it puts ``y`` before
    ``x`` so, 0 in between. For training recipes under which no one signal holds."""
    z = math.log(level / (1.0 - level))

    def clock(x: str, y: str, e: PairOutcome) -> int:
        lo = strong_log_odds(x, e) + weak_log_odds(x, y, stats, weights, e)
        return 1 if lo >= z and lo > 0 else -1 if lo <= -z and lo < 0 else 0
    return clock


def follow_clock(directed: list[tuple[str, str, PairOutcome]], roots: list[str],
                 outcomes: list[PairOutcome], stats: dict | None, clock=None
                 ) -> tuple[list[tuple[str, str, PairOutcome]], list[str]]:
    """The directed edges and roots, every edge that points against the clock corrected.

    ``clock(x, y, e)``: +1 if it puts ``x`` before ``y`` across edge ``e``, -1 after, 0 when it
    cannot tell (:func:`signal_clock`, :func:`evidence_clock`); by default the ``head`` signal
    on ``stats``. A child the clock puts before its parent hangs instead from its nearest
    related model (``outcomes``) that the clock puts before it, never from one of its own
    descendants; where there is none, the child is the first of its tree and becomes its root
    (the path from the old root to it turns round). Edges the clock cannot read are kept, so
    are trees.
    """
    if clock is None:
        if not stats:
            return directed, roots
        clock = signal_clock(stats)

    near: dict[str, list] = {}
    for o in outcomes:
        if o.related:
            near.setdefault(o.a, []).append(o)
            near.setdefault(o.b, []).append(o)
    parent = {c: (p, e) for p, c, e in directed}
    roots = list(roots)

    def descendants(x: str) -> set:
        """``x`` and every model below it."""
        def above(y: str):
            while y in parent:
                y = parent[y][0]
                yield y
        return {x} | {y for y in parent if x in above(y)}

    def reroot(c: str) -> None:
        """Turn round the path from ``c``'s root down to ``c``: ``c`` becomes the root."""
        path = [c]
        while path[-1] in parent:
            path.append(parent[path[-1]][0])
        edges = [parent.pop(x)[1] for x in path[:-1]]
        for (x, y), e in zip(zip(path, path[1:]), edges):
            parent[y] = (x, e)
        roots[roots.index(path[-1])] = c

    # a re-hang removes an edge against the clock and adds none; a re-rooting can turn path edges
    # against it, which later steps re-hang; bounded all the same
    for _ in range(4 * len(directed) + 4):
        for c in sorted(parent):
            p, e = parent[c]
            if clock(p, c, e) >= 0:
                continue
            below = descendants(c)
            options = sorted((o.length, q, o) for o in near.get(c, ())
                             for q in [o.b if o.a == c else o.a]
                             if q not in below and clock(q, c, o) > 0)
            if options:
                parent[c] = (options[0][1], options[0][2])
            else:  # nothing related comes before c: it is the first of its tree
                reroot(c)
            break
        else:
            break
    order = {c: k for k, (_, c, _) in enumerate(directed)}
    edges = sorted(((p, c, e) for c, (p, e) in parent.items()),
                   key=lambda x: (order.get(x[1], len(order)), x[1]))
    return edges, roots


def follow_inheritance(directed: list[tuple[str, str, PairOutcome]], outcomes: list[PairOutcome],
                       share, stats: dict | None, leaves: frozenset = frozenset(), clock=None
                       ) -> list[tuple[str, str, PairOutcome]]:
    """The directed edges, each child moved to the relative whose own displacement it carries.

    ``share(q, p, c)`` is :func:`.inheritance.displacement_share` of ``p`` and ``c`` from ``q``
    (None: it cannot tell): about 1 if ``c`` descends from ``p``, about 0 if both descend from
    ``q``. Models are visited parents first; for each child ``c`` of ``p``:

    * up: while ``p`` has a parent ``q`` and ``c`` carries less than
      :data:`~.inheritance.CHILD_SHARE` of ``p``'s own displacement from ``q``, ``c`` is ``p``'s
      sibling, not its child: it hangs from ``q`` (two siblings trained alike, one hung below
      the other by the distances);
    * down: among ``p``'s other children that the clock (``clock``, as in :func:`follow_clock`;
      by default the ``head`` signal on ``stats``) puts before ``c`` (never ``c``'s
      descendants, never quantized copies), the one whose own displacement from ``p`` ``c``
      carries most, from :data:`~.inheritance.CHILD_SHARE` up, becomes its parent, and so on
      down (a grandchild that trained back towards its grandparent's task, hung beside its
      parent by the distances).

    Only to models related to ``c`` (``outcomes``), and never from a parent that ``c`` differs
    from by a merged adapter to one it differs from by a higher rank or a full one (adapters
    trained alike carry each other's displacement; the rank says which model they were
    trained on). Roots do not change.
    """
    clock = clock or signal_clock(stats)
    pair = {}
    for o in outcomes:
        if o.related:
            pair[(o.a, o.b)] = pair[(o.b, o.a)] = o
    parent = {c: (p, e) for p, c, e in directed}

    def children(x: str) -> list[str]:
        return sorted(y for y, (p, _) in parent.items() if p == x)

    def below(x: str) -> set:
        out, stack = {x}, [x]
        while stack:
            for y in children(stack.pop()):
                out.add(y)
                stack.append(y)
        return out

    order, level = [], sorted({p for p, _, _ in directed} - set(parent))
    while level:  # breadth first from the roots: parents before children
        level = [y for x in level for y in children(x)]
        order += level
    for c in order:
        while parent[c][0] in parent:  # up
            p = parent[c][0]
            q = parent[p][0]
            s = share(q, p, c) if (q, c) in pair else None
            if s is None or s >= CHILD_SHARE or _rank(pair[(q, c)]) > _rank(parent[c][1]):
                break
            parent[c] = (q, pair[(q, c)])
        while True:  # down
            p, mine = parent[c][0], below(c)
            scored = []
            for s in children(p):
                e = pair.get((s, c))
                if (s in mine or s in leaves or e is None or clock(s, c, e) <= 0
                        or _rank(e) > _rank(parent[c][1])):
                    continue
                v = share(p, s, c)
                if v is not None and v >= CHILD_SHARE:
                    scored.append((v, s, e))
            if not scored:
                break
            _, s, e = max(scored, key=lambda x: (x[0], x[1]))
            parent[c] = (s, e)
    order = {c: k for k, (_, c, _) in enumerate(directed)}
    return sorted(((p, c, e) for c, (p, e) in parent.items()), key=lambda x: order[x[1]])


def _rank(e: PairOutcome) -> float:
    """The rank of the merged adapter across edge ``e`` (infinite: none, a full-rank change)."""
    return math.inf if e.adapter is None else e.adapter


def _away_from(root: str, adj) -> list[tuple[str, str, PairOutcome]]:
    out, seen, stack = [], {root}, [root]
    while stack:
        x = stack.pop()
        for e in sorted(adj[x], key=lambda e: (e.a, e.b)):
            y = e.b if e.a == x else e.a
            if y not in seen:
                seen.add(y)
                out.append((x, y, e))
                stack.append(y)
    return out


def strong_log_odds(parent: str, e: PairOutcome) -> float:
    """Log-odds that ``parent`` is the parent on edge ``e`` from the strong evidence."""
    return (e.direction if e.a == parent else -e.direction) / 2.0 * STRONG_LOG_ODDS


def edge_votes(parent: str, child: str, e: PairOutcome, stats: dict | None) -> dict[str, int]:
    """The weak signals' votes on ``parent -> child`` across edge ``e`` (:func:`.direction.votes`
    on the models' ``stats``, the weight signals silent where ``e`` is rescaled); none without
    statistics, or between copies of one model (:func:`is_copy`): nothing separates the two."""
    if not stats or parent not in stats or child not in stats or is_copy(e):
        return {}
    return votes(stats[parent], stats[child], e.rescaled)


def weak_log_odds(parent: str, child: str, stats: dict | None, weights: dict | None,
                  e: PairOutcome) -> float:
    """Log-odds that ``parent -> child`` from the weak signals (:func:`edge_votes`), each weighed
    by ``weights``."""
    w = weights or {}
    return sum(w.get(k, 0.0) * v for k, v in edge_votes(parent, child, e, stats).items())


def is_copy(e: PairOutcome) -> bool:
    """Whether edge ``e`` joins copies of one model (aligned weights within
    :data:`COPY_DISTANCE`)."""
    return e.distance is not None and e.distance < COPY_DISTANCE


def _agreement(root: str, adj, weak: bool = False, stats: dict | None = None,
               weights: dict | None = None) -> float:
    """Summed log-odds of the edges pointing away from ``root``: from the strong evidence, or
    (``weak``) from the weak signals."""
    total = 0.0
    for parent, child, e in _away_from(root, adj):
        total += (weak_log_odds(parent, child, stats, weights, e) if weak
                  else strong_log_odds(parent, e))
    return total


def edge_confidence(parent: str, child: str, e: PairOutcome, stats: dict | None,
                    weights: dict | None) -> float:
    """Posterior that ``parent -> child`` is the right direction, all evidence combined as
    independent log-odds from an even prior."""
    z = strong_log_odds(parent, e) + weak_log_odds(parent, child, stats, weights, e)
    return 1.0 / (1.0 + math.exp(-z))


def mermaid(edges: list[dict], roots: list[str], merges: list | None = None) -> str:
    """Mermaid ``graph TD`` text of the forest (edges labelled with their closeness, and an
    adapter's rank; a merge's other parents dotted, labelled with their shares)."""
    ids: dict[str, str] = {}

    def node(name: str) -> str:
        if name not in ids:
            ids[name] = f"m{len(ids)}"
            return f'{ids[name]}["{name}"]'
        return ids[name]

    lines = ["graph TD"]
    for e in edges:
        said = ([] if e.get("closeness") is None else [f"{e['closeness']:.2f}"]) + (
            [f"adapter r{e['adapter']}"] if e.get("adapter") is not None else [])
        label = f"|{' · '.join(said)}|" if said else ""
        lines.append(f"  {node(e['parent'])} -->{label} {node(e['child'])}")
    tree_parent = {e["child"]: e["parent"] for e in edges}
    for m in merges or []:
        for p in m["parents"]:
            if tree_parent.get(m["child"]) != p["parent"]:
                lines.append(f"  {node(p['parent'])} -. \"{m['recipe']} {p['share']:.2f}\" .-> "
                             f"{node(m['child'])}")
    for r in roots:
        if r not in ids:
            lines.append(f"  {node(r)}")
    return "\n".join(lines)


def aligned_distance(m) -> float:
    """Distance between A's matched parameters and B's aligned to them, relative to their size:
    ``||a - b|| / sqrt((||a||^2 + ||b||^2) / 2)`` over every matched layer. Independent
    fine-tunes of one parent move in near-orthogonal directions, so distances add up along a
    lineage as squares (siblings sqrt(2) times farther apart than each from the parent)."""
    diff = scale = 0.0
    for k, a in m.correspondence.a_params.items():
        b = m.correspondence.b_aligned.get(k, {})
        for key, va in a.items():
            if key == "eps" or key not in b or np.shape(va) != np.shape(b[key]):
                continue
            x, y = np.asarray(va, np.float64), np.asarray(b[key], np.float64)
            diff += float(np.sum((x - y) ** 2))
            scale += 0.5 * float(np.sum(x * x) + np.sum(y * y))
    return float(np.sqrt(diff / scale)) if scale > 0 else float("inf")


#: Three models on one line within this share of the path length: one run passing through the
#: middle one (its checkpoints), a chain.
COLLINEAR = 0.1


def shape_notes(edges: list[dict], related: list[dict]) -> list[str]:
    """Chains and stars the distances and directions can and cannot tell apart.

    For a model ``b`` between two of its tree neighbours ``a`` and ``c``: if ``d(a, c)`` is
    about ``d(a, b) + d(b, c)`` the three lie on one line, one training run passing through ``b``
    (checkpoints of one fine-tune): a chain. If not, the distances fit ``b`` as the parent of
    both as well as a chain through ``b``, and only the direction evidence tells them apart:
    said so where its edges are undecided."""
    dist = {}
    for r in related:
        dist[(r["a"], r["b"])] = dist[(r["b"], r["a"])] = r["distance"]
    nbrs: dict[str, list] = {}
    for e in edges:
        nbrs.setdefault(e["parent"], []).append((e["child"], e))
        nbrs.setdefault(e["child"], []).append((e["parent"], e))
    notes = []
    for b, around in sorted(nbrs.items()):
        line, unsure = [], False
        for i in range(len(around)):
            for j in range(i + 1, len(around)):
                (a, ea), (c, ec) = around[i], around[j]
                dab, dbc, dac = dist.get((a, b)), dist.get((b, c)), dist.get((a, c))
                if None in (dab, dbc, dac) or min(dab, dbc) <= 0.2 * max(dab, dbc):
                    continue  # one leg is next to nothing (a copy): no line to read
                if (dab + dbc - dac) / (dab + dbc) < COLLINEAR:
                    line.append(f"{a} - {b} - {c}")
                elif "undecided" in (ea["direction"], ec["direction"]):
                    unsure = True
        if line:
            notes.append(f"{'; '.join(line)}: on one line (each outer pair as far apart as the "
                         f"sum of their distances to {b}): one run through {b}, a chain "
                         "(checkpoints of one fine-tune?)")
        elif unsure:
            names = ", ".join(n for n, _ in around)
            notes.append(f"{b} and {names}: the distances fit {b} as the parent of them as well "
                         f"as a chain through {b}, and the direction evidence cannot tell which")
    for e in edges:
        heads = {k for k in (e.get("classes") or {}).values() if k is not None}
        if e.get("distance") is not None and e["distance"] < COPY_DISTANCE and len(heads) <= 1:
            notes.append(f"{e['parent']} and {e['child']} carry the same weights up to "
                         f"{e['distance']:.1e} (a re-export or an obfuscated copy): which one is "
                         "the parent cannot be told")
    return notes
