"""Merges in a forest: a model made from several of the others gets each of them as a parent.

Per family (models joined by related pairs), every member is aligned to one of them
(:class:`FamilyFrame`), and each parameter tensor's inner products between the members are kept
(a Gram matrix per tensor): any least-squares fit of one member on others, tensor by tensor, with
or without a base, is then a small solve.

1. **Averages.** A linear or SLERP merge (or task arithmetic whose weights sum under 1) is, tensor
   by tensor, a combination of its parents with positive weights, to rounding. A member that a
   non-negative fit on the others explains so (the remainder under :data:`EXPLAINED` of its
   distance to its nearest relative) is not a *generator*; a parent is: it lies outside the cone
   of the rest (a negative weight is needed to reach it). Each non-generator is fitted again on
   the generators alone, and given the smallest set of them (at most :data:`MOST_PARENTS`) that
   explains it, so an average is given the models it was made from, not another average on the
   same line; the generators found to be merges of task vectors (step 2) are left out of that
   fit where the others explain it (they lie in the span of their base and parents).
2. **Task vectors.** TIES, DARE and task arithmetic with weights summing over 1 (``M = Q + sum_i
   w_i (A_i - Q)``) are generators too: they leave the cone, and TIES and DARE trim or drop values
   one by one, so no combination explains them to rounding. Task arithmetic is found as the
   smallest set of generators whose task vectors from another generator ``Q`` explain ``M - Q``
   to rounding. TIES and DARE leave many of the base's values as they were (every value no
   parent kept): their base is the generator that holds the most of ``M``'s values exactly
   (at least :data:`SAME_FROM` of them), and their parents the generators one of whose
   coefficients recurs, value by value, in ``M - Q`` (at least :data:`~.attribution.RECURS` of the
   values it changed: where it alone was kept). A base sparser than its merge or a parent
   (:data:`SPARSER`) is not taken: that is a pruning chain read the DARE way.
3. Every proposal is checked by :func:`onnx_lineage.analyses.attribution.attribute`: only a
   recipe that makes a merge (:data:`RECIPES` without a base, :data:`TASK_RECIPES` with one) with
   every parent's share positive is kept. An average that uses as a parent the base of task-vector
   merges found is read again as task arithmetic from it (``(1 - W) Q + sum_i w_i A_i`` is both).
4. The algebra cannot tell task arithmetic from its base: with weights summing over 1, ``Q`` is a
   merge of the same parents from ``M`` just as well (positive shares ``w_i / (W - 1)``). The
   model that is the base of more found merges is taken as the base, and a model kept as a merge
   is no base or parent of another; a tie is broken by the forest's decided directions (the base
   above the parents), and left out when they say nothing.

``tree`` then draws the forest again without the merges, and hangs each from its largest parent
(:func:`attach`): a merge is nobody's parent in the drawn forest, and a model trained from a merge
hangs from its nearest relative that is not one (a limit of this version).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from onnx_lineage import memory
from onnx_lineage.analyses.attribution import RECURS, aligned, attribute, ratio_mode, value_by_value
from onnx_lineage.errors import LineageError
from onnx_lineage.evidence.same_values import RELATIVE
from onnx_lineage.model.runner import parameter_count

#: Most parents a merge is looked for with.
MOST_PARENTS = 4
#: Most generators whose subsets are tried as a merge's parents (beyond, those a non-negative
#: fit uses).
MOST_CANDIDATES = 12
#: A fit explains a member when its remainder is at most this share of the member's distance to
#: its nearest relative (rounding leaves about 1e-6; a parent of share 0.01 left out, about 1e-2).
EXPLAINED = 1e-3
#: A member this much closer to another than to any third is a copy of it (re-export, float16),
#: and only one of them is a candidate parent.
COPY = 0.01
#: A TIES or DARE merge holds its base's values where no parent was kept: at least this share.
SAME_FROM = 0.05
#: A TIES or DARE base holds at most this share of exact zeros more than its merge and each
#: parent: pruning reads like DARE value by value (a pruned model keeps its source's values or
#: zeroes them), but takes a sparser model as the base, where merges of fine-tunes zero nothing.
SPARSER = 0.01
#: Values read, evenly spaced, for a coefficient's recurrence and TIES's or DARE's reading (the
#: attribution that checks a proposal reads them all).
SAMPLE = 100_000
#: Bases tried for a TIES or DARE merge, those holding most of its values first.
BASES_TRIED = 3
#: Most candidates whose sets are tried as a TIES or DARE merge's parents, those whose
#: coefficient recurs most first.
MOST_VALUEWISE = 6
#: The recipes ``tree`` looks for: averages, and merges of task vectors from a base.
RECIPES = ("linear", "slerp")
TASK_RECIPES = ("task arithmetic", "ties", "dare")


@dataclass(frozen=True)
class FamilyFrame:
    """The members of a family aligned to one of them.

    Attributes
    ----------
    names : list of str
        The members, ``n``.
    tensors : list of np.ndarray
        Per parameter tensor every member holds in the same shape: (n, size) its values.
    grams : np.ndarray
        (tensors, n, n) float64: per tensor, the inner products of the members' values.
    """

    names: list
    tensors: list
    grams: np.ndarray
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def _once(self, key: tuple, compute):
        """``compute()``, kept under ``key`` (the members' readings are asked for again and
        again: per base, per candidate parent)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def size(self) -> int:
        """Values per member, over every tensor."""
        return sum(t.shape[1] for t in self.tensors)

    def centred(self, base: int | None) -> np.ndarray:
        """The Gram matrices of ``x_i - x_base`` (unchanged without a base)."""
        if base is None:
            return self.grams
        g = self.grams[:, base, :]
        return self.grams - g[:, :, None] - g[:, None, :] + self.grams[:, base, base][:, None, None]

    def distance(self, i: int, j: int) -> float:
        """The distance between members ``i`` and ``j`` over every tensor."""
        g = self.grams
        return float(np.sqrt(max(float(np.sum(g[:, i, i] - 2 * g[:, i, j] + g[:, j, j])), 0.0)))

    def same(self, i: int, j: int) -> float:
        """The share of values members ``i`` and ``j`` hold alike, to float32 rounding."""
        return self._once(("same", min(i, j), max(i, j)), lambda: sum(
            int(np.count_nonzero(np.abs(t[i] - t[j]) <= RELATIVE[None] * np.maximum(
                np.abs(t[i]), np.abs(t[j])))) for t in self.tensors) / self.size)

    def zeros(self, i: int) -> float:
        """The share of member ``i``'s values that are exactly zero."""
        return self._once(("zeros", i), lambda: sum(
            int(np.count_nonzero(t[i] == 0)) for t in self.tensors) / self.size)

    def recurs(self, m: int, base: int, parent: int) -> float:
        """The share of the values ``parent`` changed from ``base`` at which ``m``'s change is
        its change times one recurring coefficient (:func:`.attribution.ratio_mode`), read on
        :meth:`sample`."""
        q = self.sample(base)
        with np.errstate(divide="ignore", invalid="ignore"):
            return ratio_mode((self.sample(m) - q) / (self.sample(parent) - q))[1]

    def sample(self, i: int) -> np.ndarray:
        """Member ``i``'s values, at most :data:`SAMPLE` of them evenly spaced, as float64."""
        def read() -> np.ndarray:
            x = np.concatenate([t[i] for t in self.tensors])
            return x[::max(1, -(-x.size // SAMPLE))].astype(np.float64)
        return self._once(("sample", i), read)


def family_frame(members: list, loaded: dict, seed: int) -> FamilyFrame | None:
    """``members`` aligned to the first of them (:func:`.attribution.aligned`), those the data-free
    tests do not tie to it left out; None where fewer than three remain or none of their tensors
    is common to all.

    Raises MemoryBudgetError where every member's parameters would not fit the budget together.
    """
    ref = loaded[members[0]]
    memory.check(8.0 * parameter_count(ref.proto) * len(members),
                 f"the merge search over {len(members)} related models")
    rng = np.random.default_rng(seed)
    frames = {members[0]: None}
    for x in members[1:]:
        try:
            a = aligned(ref, loaded[x], 0.01, rng)
        except LineageError:
            continue
        if a.related:
            frames[x] = a.frame
    names = list(frames)
    others = [f for f in frames.values() if f is not None]
    if len(names) < 3:
        return None
    common = set.intersection(*(set(f) for f in others))
    tensors = []
    for i in sorted(common):
        own = others[0][i][1]
        for key in sorted(own):
            values = [np.asarray(own[key])] + [f[i][2].get(key) for f in others]
            if key != "eps" and all(v is not None and np.shape(v) == np.shape(own[key])
                                    and np.size(v) > 0 for v in values):
                tensors.append(np.stack([np.asarray(v, np.float32).ravel() for v in values]))
    if not tensors:
        return None
    grams = np.stack([x.astype(np.float64) @ x.T.astype(np.float64) for x in tensors])
    return FamilyFrame(names, tensors, grams)


def fit(grams: np.ndarray, m: int, support, *, per_tensor: bool = True) -> tuple[float, np.ndarray]:
    """Member ``m`` fitted on ``support`` by least squares on ``grams`` (:meth:`FamilyFrame.centred`):
    ``(remainder, weights)``, the remainder's norm over every tensor, each tensor fitted on its
    own (``per_tensor``, as SLERP needs) or all with one set of weights, and the weights of one
    fit over all tensors together."""
    s = list(support)
    total = grams.sum(0)
    w, *_ = np.linalg.lstsq(total[np.ix_(s, s)], total[s, m], rcond=None)
    if not per_tensor:
        return float(np.sqrt(max(float(total[m, m] - w @ total[s, m]), 0.0))), w
    rest = 0.0
    for g in grams:
        v, *_ = np.linalg.lstsq(g[np.ix_(s, s)], g[s, m], rcond=None)
        rest += max(float(g[m, m] - v @ g[s, m]), 0.0)
    return float(np.sqrt(rest)), w


def proposal(grams: np.ndarray, m: int, candidates: list) -> list:
    """The candidates a non-negative least-squares fit of ``m`` on all ``candidates`` (all tensors
    together) uses, largest weight first."""
    g = grams.sum(0)
    c = list(candidates)
    if not c:
        return []
    vals, vecs = np.linalg.eigh(g[np.ix_(c, c)])
    keep = vals > vals.max() * 1e-12
    if not keep.any():
        return []
    root = np.sqrt(vals[keep])
    w, _ = nnls((vecs[:, keep] * root).T, (vecs[:, keep].T @ g[c, m]) / root)
    return [c[k] for k in np.argsort(-w) if w[k] > 1e-9 * max(w.max(), 1e-300)]


def explains(grams: np.ndarray, m: int, candidates: list, scale: float) -> bool:
    """Whether the candidates a non-negative fit of ``m`` uses explain it tensor by tensor (the
    remainder at most :data:`EXPLAINED` times ``scale``)."""
    used = proposal(grams, m, candidates)
    return bool(used) and fit(grams, m, used)[0] <= EXPLAINED * scale


def smallest_support(grams: np.ndarray, m: int, candidates: list, scale: float) -> tuple | None:
    """The smallest set of ``candidates`` (two or more, at most :data:`MOST_PARENTS`) whose fit
    explains ``m`` tensor by tensor (:func:`explains`) with every weight positive, the best such
    fit among sets of that size; None where none does. Beyond :data:`MOST_CANDIDATES`
    candidates, those a non-negative fit uses."""
    if len(candidates) > MOST_CANDIDATES:
        candidates = proposal(grams, m, candidates)[:MOST_CANDIDATES]
    for k in range(2, min(MOST_PARENTS, len(candidates)) + 1):
        best = None
        for s in itertools.combinations(candidates, k):
            rest, w = fit(grams, m, s)
            if np.all(w > 0) and rest <= EXPLAINED * scale and (best is None or rest < best[0]):
                best = (rest, tuple(sorted(s)))
        if best is not None:
            return best[1]
    return None


def merge_edges(outcomes: list, loaded: dict, seed: int, directed: list = (),
                leaves: frozenset = frozenset()) -> tuple[list[dict], list[str]]:
    """The merges among the models (module docstring).

    Parameters
    ----------
    outcomes : list of PairOutcome
        Every exact test (``related`` read).
    loaded : dict of str to LoadedModel
    directed : list of (parent, child, PairOutcome)
        The forest's edges whose direction is decided (they break ties between a base and a merge).
    leaves : frozenset of str
        Models no merge is made from, nor looked for in (quantized copies).

    Returns
    -------
    merges : list of dict
        Per merged model: ``child``, ``recipe``, ``statement``, ``base`` (None for an average)
        and ``parents`` [{``parent``, ``share``, ``interval``}], largest share first.
    notes : list of str
        The families not searched, and why (their parameters together over the memory budget).
    """
    above = _above({c: p for p, c, _ in directed})
    out, notes = [], []
    for members in families(outcomes, leaves):
        try:
            frame = family_frame(members, loaded, seed)
        except memory.MemoryBudgetError as exc:
            notes.append(f"no merge looked for among {', '.join(members)}: {exc}")
            continue
        if frame is not None:
            out += _family_merges(frame, loaded, seed, above)
    return sorted(out, key=lambda m: m["child"]), notes


def families(outcomes: list, leaves: frozenset = frozenset()) -> list[list]:
    """The models joined by related pairs (``leaves`` left out), three or more to a family, each
    led by its member with the most related pairs (then by name), the rest by name."""
    link: dict[str, set] = {}
    for o in outcomes:
        if o.related and o.a not in leaves and o.b not in leaves:
            link.setdefault(o.a, set()).add(o.b)
            link.setdefault(o.b, set()).add(o.a)
    seen, out = set(), []
    for start in sorted(link):
        if start in seen:
            continue
        comp, stack = set(), [start]
        while stack:
            x = stack.pop()
            if x not in comp:
                comp.add(x)
                stack += sorted(link[x] - comp)
        seen |= comp
        if len(comp) >= 3:
            lead = min(comp, key=lambda x: (-len(link[x]), x))
            out.append([lead] + sorted(comp - {lead}))
    return out


def _family_merges(frame: FamilyFrame, loaded: dict, seed: int, above) -> list[dict]:
    """The merges of one family (module docstring, steps 1-4)."""
    names, n = frame.names, len(frame.names)
    dist = np.array([[frame.distance(i, j) if i != j else np.inf for j in range(n)]
                     for i in range(n)])
    members = _without_copies(dist)
    nearest = {i: float(min(dist[i, j] for j in members if j != i)) for i in members}
    generators = [m for m in members if not explains(
        frame.grams, m, [c for c in members if c != m], nearest[m])]

    def check(m: int, parents, base: int | None, recipes: tuple) -> dict | None:
        return _attributed(names[m], [names[x] for x in parents],
                           None if base is None else names[base], recipes, loaded, seed)
    proposed = _TaskVectors(frame, generators)
    task = [{"child": names[m], "base": names[q], "parents": [names[x] for x in parents],
             "at": (m, q, parents)} for m in generators for q, parents in proposed.of(m)]
    chosen = []
    for t in _resolve(task, above):
        m, q, parents = t["at"]
        found = check(m, parents, q, TASK_RECIPES)
        if found:
            chosen.append(found)
    bases = {t["base"] for t in chosen}
    taken = {t["child"] for t in chosen}
    plain = [g for g in generators if names[g] not in taken]
    for m in members:
        if m in generators:
            continue
        s = (smallest_support(frame.grams, m, plain, nearest[m])
             or smallest_support(frame.grams, m, generators, nearest[m]))
        if s is None:
            continue
        base = next((x for x in s if names[x] in bases), None)
        found = (base is not None and check(m, [x for x in s if x != base], base, TASK_RECIPES)
                 or check(m, s, None, RECIPES))
        if found:
            chosen.append(found)
    return chosen


def _without_copies(dist: np.ndarray) -> list[int]:
    """The members less every copy (:data:`COPY`) of an earlier one."""
    kept = []
    for i in range(dist.shape[0]):
        order = np.sort(dist[i])
        twin = int(np.argmin(dist[i]))
        if not (twin in kept and len(order) > 2 and order[0] <= COPY * order[1]):
            kept.append(i)
    return kept


class _TaskVectors:
    """Proposals of merges of task vectors among ``generators`` (module docstring, step 2)."""

    def __init__(self, frame: FamilyFrame, generators: list):
        self.frame, self.generators = frame, generators
        self._from: dict = {}

    def of(self, m: int) -> list:
        """``(base, parents)`` for ``m``: task arithmetic's smallest explaining sets, from every
        base that has one of the smallest size; then TIES or DARE from the generators holding
        most of ``m``'s values (:data:`BASES_TRIED`)."""
        out, size = [], MOST_PARENTS + 1
        for q in self.generators:
            if q == m:
                continue
            g, exact = self._base(q)
            if m not in exact:
                continue
            rest = [x for x in self.generators if x not in (m, q)]
            scale = exact[m]
            s = (smallest_support(g, m, [x for x in rest if x not in exact], scale)
                 or smallest_support(g, m, rest, scale))
            if s is not None and len(s) <= size:
                out = ([] if len(s) < size else out) + [(q, s)]
                size = len(s)
        return out + self._value_by_value(m)

    def _base(self, q: int) -> tuple[np.ndarray, dict]:
        """The Gram matrices from base ``q``, and the generators whose task vector from ``q``
        the others' explain to rounding, with the norm of that task vector."""
        if q not in self._from:
            g = self.frame.centred(q)
            exact = {}
            for m in self.generators:
                scale = float(np.sqrt(max(float(g[:, m, m].sum()), 0.0)))
                if m != q and explains(g, m, [x for x in self.generators if x not in (m, q)],
                                       scale):
                    exact[m] = scale
            self._from[q] = (g, exact)
        return self._from[q]

    def _value_by_value(self, m: int) -> list:
        frame = self.frame
        out = []
        alike = sorted(((frame.same(m, q), q) for q in self.generators if q != m), reverse=True)
        for share, q in alike[:BASES_TRIED]:
            if share < SAME_FROM:
                break
            if frame.zeros(q) > frame.zeros(m) + SPARSER:
                continue  # a sparser base: pruning, not a merge
            recurring = sorted(((frame.recurs(m, q, a), a) for a in self.generators
                                if a not in (m, q)), reverse=True)
            s = _smallest_valuewise(frame, m, q, [a for r, a in recurring if r >= RECURS
                                                  and frame.zeros(q) <= frame.zeros(a) + SPARSER])
            if s is not None:
                out.append((q, s))
        return out


def _smallest_valuewise(frame: FamilyFrame, m: int, base: int, candidates: list) -> tuple | None:
    """The smallest set of ``candidates`` (two or more, at most :data:`MOST_PARENTS`, tried in
    their order) whose task vectors from ``base`` make ``m``'s value by value as TIES or DARE do
    (:func:`.attribution.value_by_value`, on :meth:`FamilyFrame.sample`), else None."""
    q, y = frame.sample(base), frame.sample(m)
    xs = {a: frame.sample(a) for a in candidates[:MOST_VALUEWISE]}
    for k in range(2, min(MOST_PARENTS, len(xs)) + 1):
        for s in itertools.combinations(xs, k):
            basis = np.stack([xs[a] for a in s], axis=1)
            magnitude = np.abs(y) + np.abs(basis).sum(1) + np.abs(q)
            if value_by_value(y - q, basis - q[:, None], magnitude, RELATIVE[None]) is not None:
                return tuple(sorted(s))
    return None


def _resolve(task: list, above) -> list:
    """The proposed task-vector merges (``child``, ``base``, ``parents``) kept (module docstring,
    step 4): a base of more merges first; no
    model both a merge and the base or parent of another; a merge and its base that read each
    other's way alike decided by the forest, else left out."""
    count: dict = {}
    for t in task:
        count[t["base"]] = count.get(t["base"], 0) + 1
    kept, used = [], set()
    for t in sorted(task, key=lambda t: (-count[t["base"]], len(t["parents"]), t["child"])):
        child, base = t["child"], t["base"]
        parents = set(t["parents"])
        twin = any(u["child"] == base and u["base"] == child for u in task)
        if twin and count[child] == count[base] and not any(
                base in above(x) for x in parents | {child}):
            continue  # each reads as the other's merge alike, and the forest does not say
        merged = {k["child"] for k in kept}
        if child in used or child in merged or base in merged or parents & merged:
            continue
        kept.append(t)
        used |= {base} | parents
    return kept


def _above(up: dict):
    """``above(x)``: the models above ``x`` in the forest whose child-to-parent map is ``up``."""
    def above(x: str) -> set:
        seen = set()
        while x in up and up[x] not in seen:
            x = up[x]
            seen.add(x)
        return seen
    return above


def _attributed(m: str, candidates: list, base: str | None, recipes: tuple, loaded: dict,
                seed: int) -> dict | None:
    """``m`` attributed to ``candidates`` (from ``base``): a merge when the recipe is one of
    ``recipes`` and every candidate is related with a positive share, else None."""
    try:
        r = attribute(loaded[m], [loaded[x] for x in candidates],
                      None if base is None else loaded[base], seed=seed)
    except LineageError:
        return None
    if r.recipe not in recipes or any(s.share is None or s.share <= 0 for s in r.parents):
        return None
    return {"child": m, "recipe": r.recipe, "statement": r.statement, "base": base, "parents": [
        {"parent": x, "share": s.share, "interval": s.interval}
        for x, s in sorted(zip(candidates, r.parents), key=lambda xs: -xs[1].share)]}


def attach(directed: list, roots: list, merges: list, outcomes: list) -> tuple[list, list]:
    """The forest drawn without the merges, with each merge hung from its largest parent that an
    exact test joined to it (its other parents are in its record); a merge tested against none
    of its parents is a root. ``(directed, roots)``."""
    pair = {}
    for o in outcomes:
        pair[(o.a, o.b)] = pair[(o.b, o.a)] = o
    directed, roots = list(directed), set(roots)
    for m in merges:
        child = m["child"]
        top = next((p["parent"] for p in m["parents"] if (p["parent"], child) in pair), None)
        if top is None:
            roots.add(child)
        else:
            directed.append((top, child, pair[(top, child)]))
    return directed, sorted(roots)
