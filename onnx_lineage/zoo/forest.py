"""The lineage forest: a maximum spanning forest over related pairs, oriented parent to child.

Edges join pairs found related by the exact test, weighted by their unit similarity (derived
models are closer to their own parent than to their siblings or grandparents, so a chain
A -> B -> C keeps A-B and B-C and drops A-C). Each tree's root is the model that best agrees with
the direction evidence of its edges (quantization, sparsity, norm drift); edges point away from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PairOutcome:
    """Exact test of one candidate pair (``direction`` > 0: ``a`` looks like the parent)."""

    a: str
    b: str
    related: bool | None
    weight: float
    direction: float
    evidence: tuple
    error: str | None = None
    weak: float = 0.0


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
    """Related pairs kept by Kruskal's maximum spanning forest (ties broken by name).

    Models in ``leaves`` (quantized copies: nothing is trained from an int8 file) are attached
    last, each to its most similar related model outside ``leaves``.
    """
    uf = _UnionFind(models)
    kept = []
    related = sorted((o for o in outcomes if o.related), key=lambda o: (-o.weight, o.a, o.b))
    for o in related:
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


def orient(models: list[str], edges: list[PairOutcome], centrality: dict | None = None
           ) -> tuple[list[tuple[str, str, PairOutcome]], list[str]]:
    """Directed edges (parent, child, outcome) and the roots (one per tree, isolated models too).

    A tree's root is the model whose orientation agrees best with the strong direction evidence
    (``direction``: quantization, sparsity); among equals, the most central one (``centrality``,
    higher is more central: see ``tree.hubness``); then the one the weak evidence (``weak``: norm
    drift) agrees with best.
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
        root = max(sorted(comp), key=lambda r: (round(_agreement(r, adj), 6),
                                                 round(centrality.get(r, 0.0), 6),
                                                 round(_agreement(r, adj, weak=True), 6)))
        roots.append(root)
        directed += _away_from(root, adj)
    return directed, roots


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


def _agreement(root: str, adj, weak: bool = False) -> float:
    """Sum of (strong, or weak) direction scores agreeing with edges pointing away from ``root``."""
    total = 0.0
    for parent, _child, e in _away_from(root, adj):
        score = e.weak if weak else e.direction
        total += score if e.a == parent else -score
    return total


def mermaid(edges: list[dict], roots: list[str]) -> str:
    """Mermaid ``graph TD`` text of the forest (edges labelled with their closeness)."""
    ids: dict[str, str] = {}

    def node(name: str) -> str:
        if name not in ids:
            ids[name] = f"m{len(ids)}"
            return f'{ids[name]}["{name}"]'
        return ids[name]

    lines = ["graph TD"]
    for e in edges:
        label = "" if e.get("closeness") is None else f"|{e['closeness']:.2f}|"
        lines.append(f"  {node(e['parent'])} -->{label} {node(e['child'])}")
    for r in roots:
        if r not in ids:
            lines.append(f"  {node(r)}")
    return "\n".join(lines)
