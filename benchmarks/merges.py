"""Merges and adapters with known recipes: does ``attribute`` find the parents, their shares and
the recipe, and does ``determine`` give a merged adapter's rank?

    python benchmarks/merges.py /tmp/merges --seeds 3 4 --json benchmarks/results/merges.json
    python benchmarks/merges.py --from benchmarks/results/merges.json --markdown
    python benchmarks/merges.py /tmp/merges --seeds 3 4 --trees-only --json benchmarks/results/merges_trees.json
    python benchmarks/merges.py /tmp/merges --seeds 5 6 --json benchmarks/results/merges_seeds_5_6.json

Per seed and family (``digits_mlp`` 64-128-64-10 and ``digits_cnn`` with BatchNorm kept, from
``families.py``): a base trained on the first half of digits, four parents fine-tuned from it on
random halves of the second half (Adam 1e-3, 5 epochs), and merges made the way mergekit makes
them, tensor by tensor over every float tensor of the state dict (BatchNorm statistics
included), with weights drawn per merge: ``linear`` (2-4 parents, Dirichlet weights),
``slerp`` (2 parents, t in [0.2, 0.8]), ``task_arithmetic`` (2-4 task vectors from the base,
each weight in [0.3, 1]), ``ties`` (2-3 task vectors trimmed to their top 20% by magnitude, signs
elected by the sum, the agreeing values averaged, weight 1) and ``dare`` (2-3 task vectors with
half their values dropped at random and the rest doubled, weights in [0.3, 1]); look-alikes that
are no merge: a fine-tune of one parent, a model trained independently and a student distilled
from a parent (its own initialisation). ``attribute`` runs on each with the parents (and, for
task vectors, the base) as candidates, an independent model added to the linear merges'.

The ``decoder`` family (:func:`decoder_family`) is ``llm_family.py``'s Llama-style decoder on the
standard library's text: its parent as the base, four parents fine-tuned from it each on its own
slice of the text, the same merges of their state dicts, and the same look-alikes (``p1``
fine-tuned further; a decoder trained from another seed; a fresh decoder distilled from
``p1``'s next-byte distributions).

Adapters (``mnist_wide``, 784-512-512-10 on MNIST): a base, and the base with a rank-r adapter
(LoRA on every Linear, :func:`families.adapted`) trained and merged, r in 4, 8, 16, 32, 64;
for the decoder, LoRA of rank r on the q, v, gate, up and down projections of every block
(``llm_derivations.lora``), trained 100 steps and merged. ``determine``'s difference
(:func:`onnx_lineage.analyses.lowrank.difference`) gives each layer's rank, which should be
``min(r, rows, columns)`` where adapted and 0 elsewhere.

``tree`` then runs over each family's folder (base, parents, merges, look-alikes, and the
decoder's adapters; without closeness): each merge against the parents it was made from
(:func:`run_tree`). With ``--trees-only`` it runs on the folders an earlier run left.

Each parent's ``p_share`` (the test of "this parent's share is 0": B made from the others
alone) is recorded and read where the truth is known: the true parents of a merge, and the
fine-tune's second candidate ``p2``, a sibling of its parent from which it was not made.

The method's settings (the share interval's level, SLERP's tolerance, the value-by-value
readings' thresholds, the adapter's alternating fit) were set on the synthetic MLPs of
tests/analyses/test_attribution.py; a first run on seeds 1 and 2 found the DARE reading's two
faults (coefficients rounded, kept values miscounted), mended without a new threshold, so the
reported seeds are 3 and 4, run once after. The decoder family was developed on its seed 1 alone,
which found a third (a coefficient counted among all of a tensor's values, not those its parent
changed: fc8ceb3) before seeds 3 and 4 were run.

``tree``'s search for merges (:mod:`onnx_lineage.zoo.merges`: generators, smallest explaining
sets, TIES and DARE bases from the values they keep) was written against the folders of seeds 3
and 4 (where the previous search drew 1 of 66 merges with exactly its parents), so those seeds
are no test of it: it is reported on seeds 5 and 6, built and run once after.

Each parent's ``p_share`` is the test of "B derives from the other parents alone, trained after
or not" where B is exactly their combination (:class:`~onnx_lineage.analyses.attribution.Share`),
and none where it is not (a fine-tune's candidates).
"""

from __future__ import annotations

import copy
import functools
import math
import time
from pathlib import Path

import numpy as np

import harness

harness.checkout_first()
from harness import cli  # noqa: E402
from harness.machine import machine  # noqa: E402

DECODER = "decoder"
FAMILIES = ("digits_mlp", "digits_cnn", DECODER)
PARENTS = 4
#: The adapters' ranks.
RANKS = (4, 8, 16, 32, 64)


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _load(template, state: dict):
    model = copy.deepcopy(template)
    model.load_state_dict(state)
    return model.eval()


def _floats(state: dict) -> list:
    return [k for k, v in state.items() if v.is_floating_point()]


def linear(states, w, base=None):
    return {k: (sum(wi * s[k] for wi, s in zip(w, states)) if k in _floats(states[0]) else
                states[0][k]) for k in states[0]}


def task_arithmetic(states, w, base):
    return {k: (base[k] + sum(wi * (s[k] - base[k]) for wi, s in zip(w, states))
                if k in _floats(base) else base[k]) for k in base}


def slerp(states, t, base=None):
    import torch
    out = {}
    for k in states[0]:
        a, b = states[0][k], states[1][k]
        if k not in _floats(states[0]):
            out[k] = a
            continue
        ua, ub = a.flatten() / a.norm(), b.flatten() / b.norm()
        omega = math.acos(float(torch.clamp(ua @ ub, -1, 1)))
        if omega < 1e-4:  # mergekit's lerp for near-parallel tensors
            out[k] = (1 - t) * a + t * b
        else:
            out[k] = (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
    return out


def ties(states, w, base, keep=0.2):
    import torch
    out = {}
    for k in base:
        if k not in _floats(base):
            out[k] = base[k]
            continue
        taus = []
        for s in states:
            tau = s[k] - base[k]
            cut = torch.quantile(tau.abs().flatten().double(), 1 - keep).float() if tau.numel() > 1 else 0
            taus.append(torch.where(tau.abs() >= cut, tau, torch.zeros_like(tau)))
        stack = torch.stack(taus)
        sign = torch.sign(stack.sum(0))
        agree = (torch.sign(stack) == sign) & (stack != 0)
        merged = (stack * agree).sum(0) / agree.sum(0).clamp(min=1)
        out[k] = base[k] + merged
    return out


def dare(states, w, base, drop=0.5, generator=None):
    import torch
    out = {}
    for k in base:
        if k not in _floats(base):
            out[k] = base[k]
            continue
        total = base[k].clone()
        for wi, s in zip(w, states):
            keep = (torch.rand(base[k].shape, generator=generator) >= drop).float()
            total += wi * keep * (s[k] - base[k]) / (1 - drop)
        out[k] = total
    return out


def _models(family: str, seed: int, out: Path) -> tuple:
    """The base, parents and look-alikes exported: their paths by name, their state dicts by
    name, and ``export(name, state)``, which writes a model of the family holding ``state``."""
    if family == DECODER:
        return _decoder_models(seed, out)
    import torch
    import families as F
    data = F.family_data(family)
    base = F.trained(family, seed)
    rng = np.random.default_rng(seed)
    parents = []
    for i in range(PARENTS):
        idx = rng.choice(data.second, len(data.second) // 2, replace=False)
        parents.append(F.train(copy.deepcopy(base), data, idx, 5, 1e-3, seed * 100 + i))
    idx = rng.choice(data.second, len(data.second) // 2, replace=False)
    finetune = F.train(copy.deepcopy(parents[0]), data, idx, 5, 1e-3, seed * 100 + 9)
    independent = F.trained(family, seed + F.OTHER_SEED, half="second")
    torch.manual_seed(seed + 7)
    student = F.distilled(parents[0], F.TORCH[family].build(), data, data.second,
                          F.TORCH[family].epochs, F.TORCH[family].lr, seed + 7)
    models = {"base": base, **{f"p{i + 1}": p for i, p in enumerate(parents)},
              "finetune": finetune, "independent": independent, "distilled": student}

    def export(name: str, state: dict) -> Path:
        return F.export_torch(_load(base, state), data, out / f"{name}.onnx", keep_bn=True)
    return ({name: F.export_torch(m.eval(), data, out / f"{name}.onnx", keep_bn=True)
             for name, m in models.items()}, {n: _state(m) for n, m in models.items()}, export)


@functools.cache
def decoder_family(seed: int, out: Path):
    """``llm_family.py``'s decoder (its parent's shape and recipe, the standard library's text)
    as a family of this benchmark: the base is its parent; each of the parents (``p1``...) and
    the fine-tune of ``p1`` (``finetune``) trains 100 steps at 5e-4 on its own slice of the text,
    the adapters (``lora``) 100 at 2e-3; the independent model is the parent's shape trained
    from another seed on the parent's text."""
    import llm_family as L
    from harness.llama import Config
    recipes = {"parent": (300, 3e-3), **{f"p{i + 1}": (100, 5e-4) for i in range(PARENTS)},
               "finetune": (100, 5e-4), "lora": (100, 2e-3)}
    f = L.Family(L.Plan(Config(), ((Config(), 1),), recipes), [seed], out)
    f.builders.update({f"p{i + 1}": _fine_tuned("parent", f"p{i + 1}", i + 1)
                       for i in range(PARENTS)})
    f.builders.update(finetune=_fine_tuned("p1", "finetune", 9), distilled=_distilled_decoder,
                      independent=f.builders[next(n for n in f.builders if n.startswith("ind_"))])
    return f


def _fine_tuned(source: str, role: str, k: int):
    """A decoder builder: ``source`` trained further on ``role``'s slice (seed ``k``)."""
    return lambda f: f.fit(f.copy(source), role, f.seed(k))


def _distilled_decoder(f):
    """A fresh decoder (its own initialisation) trained on ``p1``'s soft next-byte
    distributions at every position (temperature 2, no true bytes), on the parent's slice with
    the parent's recipe."""
    import torch
    from harness import training
    from harness.llama import Llama
    teacher = f.model("p1").eval()
    rows = torch.from_numpy(f.corpus.slices["parent"])
    _, lr = f.plan.recipes["parent"]
    torch.manual_seed(f.seed(7))
    student = Llama(f.plan.parent)

    def loss(model, idx):
        x = rows[idx][:, :-1]
        with torch.no_grad():
            target = torch.log_softmax(teacher.all_logits(x) / 2.0, -1)
        got = torch.log_softmax(model.all_logits(x) / 2.0, -1)
        return 4.0 * torch.nn.functional.kl_div(got.flatten(0, 1), target.flatten(0, 1),
                                                log_target=True, reduction="batchmean")
    return training.train(student, np.arange(len(rows)), loss, epochs=1, lr=lr,
                          seed=f.seed(7), batch=f.plan.batch)


def _decoder_models(seed: int, out: Path) -> tuple:
    """:func:`_models` for the decoder family (:func:`decoder_family`)."""
    from llm_derivations import _clone
    f = decoder_family(seed, out)
    names = ["parent", *(f"p{i + 1}" for i in range(PARENTS)), "finetune", "independent",
             "distilled"]
    built = {("base" if n == "parent" else n): f.get(n) for n in names}

    def export(name: str, state: dict) -> Path:
        model = _clone(f.model("parent"))
        model.load_state_dict(state)
        return f.add(name, model.eval()).path
    return ({n: b.path for n, b in built.items()},
            {n: _state(b.model) for n, b in built.items()}, export)


def _merges(seed: int) -> list:
    """(name, recipe, parents used, weights, with base) for one seed."""
    rng = np.random.default_rng(1000 + seed)
    cases = []
    for k in (2, 3, 4):
        cases.append((f"linear_{k}", "linear", k, list(rng.dirichlet(np.ones(k))), False))
    cases.append(("slerp_2", "slerp", 2, [float(rng.uniform(0.2, 0.8))], False))
    for k in (2, 3, 4):
        cases.append((f"task_arithmetic_{k}", "task arithmetic", k,
                      list(rng.uniform(0.3, 1.0, k)), True))
    for k in (2, 3):
        cases.append((f"ties_{k}", "ties", k, [1.0] * k, True))
        cases.append((f"dare_{k}", "dare", k, list(rng.uniform(0.3, 1.0, k)), True))
    return cases


MAKE = {"linear": linear, "slerp": slerp, "task arithmetic": task_arithmetic, "ties": ties,
        "dare": dare}


def run_family(family: str, seed: int, out: Path) -> list:
    """Every merge and look-alike of one family and seed, attributed."""
    import torch
    from onnx_lineage.analyses.attribution import attribute
    out.mkdir(parents=True, exist_ok=True)
    paths, states, export = _models(family, seed, out)
    rows = []
    gen = torch.Generator().manual_seed(seed)
    for name, recipe, k, w, with_base in _merges(seed):
        used = [states[f"p{i + 1}"] for i in range(k)]
        make = MAKE[recipe]
        state = (make(used, w[0]) if recipe == "slerp" else
                 make(used, w, states["base"], generator=gen) if recipe == "dare" else
                 make(used, w, states["base"]))
        path = export(name, state)
        candidates = [paths[f"p{i + 1}"] for i in range(k)]
        if recipe == "linear":
            candidates.append(paths["independent"])
        truth = [1 - w[0], w[0]] if recipe == "slerp" else w
        rows.append(_attributed(name, recipe, truth, attribute(
            path, candidates, paths["base"] if with_base else None, seed=seed), family, seed))
    for name, candidates, with_base in (("finetune", ["p1", "p2"], True),
                                        ("independent", ["p1", "p2"], False),
                                        ("distilled", ["p1", "p2"], False)):
        expected = "fine-tune" if name == "finetune" else "none"
        r = attribute(paths[name], [paths[c] for c in candidates],
                      paths["base"] if with_base else None, seed=seed)
        rows.append(_attributed(name, expected, None, r, family, seed))
    return rows


def run_tree(family: str, seed: int, out: Path) -> dict:
    """``tree`` over every model of the family's folder (base, parents, merges, look-alikes and,
    for the decoder, its adapters), without closeness: each merge's parents as the forest
    gives them, against the parents it was made from; which models it calls merges; each
    adapter's edge and rank."""
    from onnx_lineage.data import Dataset
    from onnx_lineage.zoo.tree import tree
    data = None
    if family == DECODER:
        ids = decoder_family(seed, out).ids
        data = Dataset({"input_ids": ids}, None, "the decoder's held-out rows")
    t0 = time.perf_counter()
    r = tree([out], data, seed=seed, with_closeness=False)
    made = {name: [f"p{i + 1}" for i in range(k)] for name, _, k, _, _ in _merges(seed)}
    found = {m["child"].removesuffix(".onnx"): m for m in r.merges or []}
    parent = {e["child"].removesuffix(".onnx"): (e["parent"].removesuffix(".onnx"), e.get("adapter"))
              for e in r.edges}
    rows = []
    for name, truth in made.items():
        got = found.get(name)
        parents = sorted(p["parent"].removesuffix(".onnx") for p in got["parents"]) if got else []
        rows.append({"case": name, "truth": truth, "found": parents,
                     "recipe": got["recipe"] if got else None, "right": parents == truth})
    adapters = {n: parent.get(n) for n in parent if n.startswith("lora_")}
    return {"family": family, "seed": seed, "seconds": time.perf_counter() - t0,
            "merges": rows, "claimed": sorted(set(found) - set(made)),
            "finetune_parent": parent.get("finetune", (None,))[0],
            "adapters": {n: {"parent": p, "rank": rank} for n, (p, rank) in adapters.items()},
            "roots": [x.removesuffix(".onnx") for x in r.roots]}


def _attributed(name: str, recipe: str, truth, r, family: str, seed: int) -> dict:
    shares = [s.share for s in r.parents]
    related = [s.related for s in r.parents]
    error = None
    if truth is not None and all(s is not None for s in shares[:len(truth)]):
        error = max(abs(s - t) for s, t in zip(shares, truth))
    return {"family": family, "seed": seed, "case": name, "recipe": recipe, "found": r.recipe,
            "truth": truth, "shares": shares, "related": related,
            "p_values": [s.p_value for s in r.parents],
            "p_shares": [s.p_share for s in r.parents], "share_error": error,
            "remainder_rank": r.remainder_rank, "statement": r.statement, "seconds": r.seconds}


def run_adapters(seed: int, out: Path, ranks=RANKS) -> list:
    """mnist_wide and its merged adapters: each layer's rank found by determine's difference
    (every Linear adapted: ``min(r, rows, columns)`` expected)."""
    import families as F
    out.mkdir(parents=True, exist_ok=True)
    data = F.family_data("mnist_wide")
    base = F.trained("mnist_wide", seed)
    base_path = F.export_torch(base.eval(), data, out / "base.onnx")
    children = ((r, F.export_torch(F.adapted(base, data, data.second, 3, 1e-3, seed * 10 + r,
                                             rank=r), data, out / f"adapter_{r}.onnx"))
                for r in ranks)
    return _ranks("mnist_wide", seed, base_path, children, lambda layer: True)


def run_decoder_adapters(seed: int, out: Path, ranks=RANKS) -> list:
    """The decoder (:func:`decoder_family`) and LoRA of rank r on its q, v, gate, up and down
    projections (``llm_derivations.lora``), trained and merged: those layers' rank should be
    ``min(r, rows, columns)``, every other layer's 0."""
    import llm_derivations as D
    f = decoder_family(seed, out)
    parent = f.get("parent")
    targets = tuple(t.split(".")[1] for t in D.LORA_TARGETS)
    children = ((r, f.add(f"lora_{r}", D.lora(parent.model, r, lambda m: f.fit(
        m, "lora", f.seed(50 + r)), f.seed(100 + r))).path) for r in ranks)
    return _ranks(DECODER, seed, parent.path, children,
                  lambda layer: any(f"/{t}/" in layer.node for t in targets))


def _ranks(family: str, seed: int, base: Path, children, adapted) -> list:
    """Per child ``(r, path)``: each layer's rank of the difference from ``base`` against the
    truth (``min(r, rows, columns)`` where ``adapted(layer)``, else 0)."""
    from onnx_lineage.analyses.lowrank import difference
    from onnx_lineage.matching import match
    rows = []
    for r, path in children:
        t0 = time.perf_counter()
        m = match(base, path)
        d = difference(m)
        layers = {x.index: x for x in m.correspondence.a_layers}
        rows.append({"family": family, "seed": seed, "rank": r,
                     "seconds": time.perf_counter() - t0,
                     "layers": [{"a": x.a, "shape": x.shape, "found": x.rank,
                                 "expected": min(r, *x.shape) if adapted(layers[x.a]) else 0,
                                 "low": x.low} for x in d.layers],
                     "adapter": d.adapter, "statement": d.statement})
    return rows


def summary(doc: dict) -> str:
    """The tables of RESULTS.md."""
    rows, adapters = doc["merges"], doc["adapters"]
    lines = [f"Machine: {doc['machine']}", "",
             "| recipe | family | cases | recipe found | share error (max over parents): median, "
             "worst | false shares (an unrelated candidate given one) |", "|---|---|---|---|---|---|"]
    families = list(dict.fromkeys(r["family"] for r in rows))
    for recipe in ("linear", "slerp", "task arithmetic", "ties", "dare", "fine-tune", "none"):
        for family in families:
            got = [r for r in rows if r["recipe"] == recipe and r["family"] == family]
            if got:
                lines.append(_recipe_row(recipe, family, got))
    lines += ["", _look_alikes(rows), "", *_p_share_table(rows), ""]
    right = sum(1 for a in adapters for x in a["layers"] if x["found"] == x["expected"])
    total = sum(len(a["layers"]) for a in adapters)
    lines += [f"Merged adapters: {right} of {total} layers with rank exactly as made "
              "(min(r, rows, columns) where adapted, 0 elsewhere)", "",
              "| family | seed | r | layers right | ranks found by layer (where wrong: found/expected) |",
              "|---|---|---|---|---|"]
    for a in adapters:
        ok = sum(x["found"] == x["expected"] for x in a["layers"])
        ranks = [x["found"] if x["found"] == x["expected"] else f"{x['found']}/{x['expected']}"
                 for x in a["layers"]]
        lines.append(f"| {a.get('family', 'mnist_wide')} | {a['seed']} | {a['rank']} | "
                     f"{ok} of {len(a['layers'])} | {ranks} |")
    return "\n".join(lines)


def tree_summary(doc: dict) -> list:
    """``tree`` over each folder: merges drawn with exactly the parents they were made from."""
    out = ["| family | seed | merges drawn with exactly their parents | drawn with others | "
           "not drawn | other models called merges | the fine-tune's parent | adapters' edges "
           "(parent, rank) |", "|---|---|---|---|---|---|---|---|"]
    for t in doc.get("trees", []):
        rows = t["merges"]
        right = [r["case"] for r in rows if r["right"]]
        other = [f"{r['case']} <- {'+'.join(r['found'])}" for r in rows if r["found"] and not r["right"]]
        none = [r["case"] for r in rows if not r["found"]]
        adapters = ", ".join(f"{n}: {a['parent']}, {a['rank']}" for n, a in
                             sorted(t["adapters"].items())) or "-"
        out.append(f"| {t['family']} | {t['seed']} | {len(right)} of {len(rows)} | "
                   f"{'; '.join(other) or '-'} | {len(none)} | {', '.join(t['claimed']) or '-'} "
                   f"| {t['finetune_parent']} | {adapters} |")
    return out


def _recipe_row(recipe: str, family: str, got: list) -> str:
    """One row of the recipes table."""
    errs = [r["share_error"] for r in got if r["share_error"] is not None]
    found: dict = {}
    for r in got:
        found[r["found"]] = found.get(r["found"], 0) + 1
    said = ", ".join(f"{k} {v}" for k, v in sorted(found.items(), key=lambda kv: -kv[1]))
    false = sum(1 for r in got for s, rel in zip(r["shares"], r["related"])
                if s is not None and not rel)
    return (f"| {recipe} | {family} | {len(got)} | {said} | "
            + (f"{np.median(errs):.4f}, {max(errs):.4f}" if errs else "-") + f" | {false} |")


def _look_alikes(rows: list) -> str:
    """How many look-alikes (a fine-tune, an independent or distilled model) were called a
    merge."""
    merges = ("linear", "slerp", "task arithmetic", "ties", "dare")
    alike = [r for r in rows if r["recipe"] in ("fine-tune", "none")]
    called = sum(1 for r in alike if r["found"] in merges
                 or (r["found"] == "adapter" and "combination" in r["statement"]))
    return f"Look-alikes called a merge: {called} of {len(alike)}"


def _p_share_table(rows: list, level: float = 0.01) -> list:
    """``p_share`` (the test of "this parent's share is 0") where the truth is known: each true
    parent of a merge (power), and the fine-tune's second candidate, a sibling of its parent
    that it was not made from (the null holds: a value at most ``level`` is a false claim)."""
    out = [f"| family | merges' true parents with p_share <= {level} | fine-tunes' other "
           f"candidate with p_share <= {level} (false) | their p_share |", "|---|---|---|---|"]
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family and r.get("p_shares")]
        if not mine:
            continue
        true = [p for r in mine if r["truth"] is not None and r["recipe"] != "slerp"
                for p in r["p_shares"][:len(r["truth"])]]
        true += [p for r in mine if r["recipe"] == "slerp" for p in r["p_shares"][:2]]
        other = [r["p_shares"][1] for r in mine if r["recipe"] == "fine-tune"]
        hit = sum(1 for p in true if p is not None and p <= level)
        false = sum(1 for p in other if p is not None and p <= level)
        out.append(f"| {family} | {hit} of {len(true)} | {false} of {len(other)} | "
                   + ", ".join("-" if p is None else f"{p:.2g}" for p in other) + " |")
    return out


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 4])
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES),
                    help="the families merged (the MNIST adapters come with digits_mlp, the "
                         "decoder's with the decoder)")
    ap.add_argument("--trees-only", action="store_true",
                    help="only tree over the folders an earlier run left in OUT")
    cli.add_json(ap)
    cli.add_from(ap)
    cli.add_markdown(ap)
    args = ap.parse_args()

    def build(out: Path) -> dict:
        t0 = time.perf_counter()
        if args.trees_only:  # on the folders a run left
            trees = [run_tree(family, seed, out / f"{family}_{seed}")
                     for seed in args.seeds for family in args.families]
            return {"machine": machine(), "seeds": args.seeds, "families": args.families,
                    "trees": trees, "seconds": time.perf_counter() - t0}
        merges, adapters, trees = [], [], []
        for seed in args.seeds:
            for family in args.families:
                merges += run_family(family, seed, out / f"{family}_{seed}")
            if "digits_mlp" in args.families:
                adapters += run_adapters(seed, out / f"adapters_{seed}")
            if DECODER in args.families:
                adapters += run_decoder_adapters(seed, out / f"{DECODER}_{seed}")
            trees += [run_tree(family, seed, out / f"{family}_{seed}")
                      for family in args.families]
        return {"machine": machine(), "seeds": args.seeds, "families": args.families,
                "merges": merges, "adapters": adapters, "trees": trees,
                "seconds": time.perf_counter() - t0}

    doc = cli.document(args, build)
    print(summary(doc) if "merges" in doc else "", "\n".join(tree_summary(doc)), sep="\n")


if __name__ == "__main__":
    main()
