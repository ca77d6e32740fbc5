"""Lineage forests with known parents: star, chain, mixed, ladder and training-recipe forests over
three architectures, scored against ``tree`` and against MoTHer's rule in the same run.

    python benchmarks/forests.py /tmp/forests --seeds 1 2 --json benchmarks/results/forests.json
    python benchmarks/forests.py /tmp/forests_fit --seeds 100 101 --fit   # direction_signals.json
    python benchmarks/forests.py --from benchmarks/results/forests.json --markdown

Per architecture (an MLP 64-128-64-10 and a CNN on digits, a token encoder on digits as pixel
tokens) and per seed, five forests, each from its own root trained from scratch on the first half
of the data, and three independent models (two trained from scratch, one distilled):

* ``star``: the root and four children, each fine-tuned from it (Adam, 3 epochs) on its own data:
  two for another task (the second half's digits of 5 classes drawn for each: they fit the rest
  worse), two for more of the same task (a random 60% of the second half);
* ``chain``: root -> g1 -> g2 -> g3, each generation fine-tuned from the one before, on new data
  (g1 and g3 another task, g2 more of the same);
* ``mixed``: root -> a, b, p; a -> a1, a2 (other tasks); b -> b1 -> b2 (more of the same); p is
  the root 30%-magnitude pruned and fine-tuned one epoch with the mask; q is a1 quantized to int8
  (a leaf);
* ``ladder``: root -> e1 -> e2 -> e3, the checkpoints after epochs 1, 2 and 3 of one fine-tune on
  the same task (one run), scored as a chain;
* ``recipes``: the root -> adv, sgdwd, smooth, adapter; adv -> adv2, sgdwd -> sgdwd2,
  smooth -> smooth2, each trained with its recipe (:data:`RECIPES`): ``adv`` adversarial
  training (every batch replaced by its FGSM examples, eps 0.1; the encoder attacked in its
  token embeddings; :func:`families.adversarial`), ``sgdwd`` SGD with momentum 0.9 and weight
  decay 5e-3, ``smooth`` label smoothing 0.1, ``adapter`` the parent frozen and a rank-4 update
  of every Linear and Conv2d weight trained, then merged (:func:`families.adapted`), and
  ``smooth2`` a plain fine-tune of the smoothed child;
* ``indep_distil``: the recipes forest's root distilled (:func:`families.distilled`: its soft
  labels at temperature 2, no true labels) into a fresh model of its architecture, not
  initialised from it. It carries none of its teacher's weights, so it has no weight lineage:
  the truth counts it as an independent model, a root of its own.

Everything but the recipes forest is trained with Adam and no weight decay.

The two kinds of fine-tuning pull the ``loss`` signal opposite ways (a model trained further on
the data of the run fits it better than its parent; one trained for another task fits it worse),
and both are common, so both are here in about equal numbers.

Scores, overall, per forest shape and per recipe (:func:`recipe_of`): direct-parent accuracy (a
derived model whose forest parent is its true parent), root accuracy (each forest's root found as
the root of its tree), models of different forests joined (must be 0), for every true parent-child
edge the vote of each direction signal (right, wrong, undecided), and for the forest's edges that
join a true parent and child, their confidence against how often they point the right way, per band
of :data:`BANDS` (is the confidence calibrated? :func:`bands_hold`: from 0.9 up, at least the
band's lower bound right), and the share of a model's own change that another carries on every true
chain and sibling pair (how often ``tree``'s inheritance reading, and the plain projection, would
mistake one for the other). MoTHer's rule (Horwitz et al., ICLR 2025: a directed minimum spanning
tree over weight distances in which an edge pointing from higher to lower kurtosis pays a penalty)
runs on the same related groups and the same distances as the baseline.

``--fit`` writes each weak signal's measured accuracy on those seeds, and the weights of the
signals fitted together over every recipe (:func:`fitted_weights`), to
``onnx_lineage/zoo/direction_signals.json``, from which ``tree`` weighs them; report figures come
from other seeds.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

import harness

harness.checkout_first()
from families import (Data, Encoder, adapted, adversarial, cnn, dataset, distilled,  # noqa: E402
                      export_torch, mlp, train)
from harness import ROOT, cli, results  # noqa: E402
from harness.machine import machine  # noqa: E402

from onnx_lineage.data import Dataset  # noqa: E402

SIGNALS_JSON = ROOT / "onnx_lineage" / "zoo" / "direction_signals.json"
ARCHS = {"mlp": ("digits", lambda: mlp(64, 128, 64, 10), 20, 3e-3),
         "cnn": ("digits", cnn, 20, 3e-3),
         "enc": ("digit_tokens", Encoder, 12, 3e-3)}


# -- building ------------------------------------------------------------------------------------

def _subset(data: Data, seed: int, specialise: bool) -> np.ndarray:
    """A fine-tune's own data. ``specialise``: the rows of the second half whose digit is one of
    5 classes drawn for it (a fine-tune for another downstream task: it fits the rest worse);
    otherwise a random 60% of the second half (more training on the same task: it fits it
    better)."""
    rng = np.random.default_rng(seed)
    if specialise:
        return data.second[np.isin(data.y[data.second], rng.choice(10, 5, replace=False))]
    return np.sort(rng.choice(data.second, int(0.6 * len(data.second)), replace=False))


def fine_tuned(model, data: Data, seed: int, specialise: bool, epochs: int = 3):
    return train(copy.deepcopy(model), data, _subset(data, seed, specialise), epochs, 1e-3, seed)


def pruned(model, data: Data, seed: int, frac: float = 0.3):
    model = copy.deepcopy(model)
    ws = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    masks = []
    with torch.no_grad():
        for w in ws:
            mk = (w.abs() > torch.quantile(w.detach().abs().flatten(), frac)).float()
            w.mul_(mk)
            masks.append((w, mk))
    return train(model, data, _subset(data, seed, False), 1, 1e-3, seed, masks=masks)


def ladder(model, data: Data, seed: int, epochs: int = 3) -> list:
    """Checkpoints after each epoch of one fine-tuning run (on the same task)."""
    model, out = copy.deepcopy(model), []
    idx = _subset(data, seed, False)
    for e in range(epochs):
        model = train(model, data, idx, 1, 1e-3, seed * 10 + e)
        out.append(copy.deepcopy(model))
    return out


#: The recipes forest's children: name -> (parent, recipe, another task?). Recipes (each on its
#: own data, :func:`_subset`): ``adv`` adversarial training (FGSM examples only, eps 0.1, Adam
#: 1e-3, 3 epochs); ``sgdwd`` SGD with momentum 0.9 and weight decay 5e-3 (lr 0.05, 10 epochs);
#: ``smooth`` label smoothing 0.1 (Adam 1e-3, 3 epochs); ``adapter`` the parent frozen, a
#: rank-4 update of every Linear and Conv2d weight trained (Adam 3e-3, 5 epochs) and merged;
#: ``adam`` the star's plain fine-tune (Adam 1e-3, 3 epochs).
RECIPES = {"adv": ("root", "adv", False), "sgdwd": ("root", "sgdwd", True),
           "smooth": ("root", "smooth", False), "adapter": ("root", "adapter", True),
           "adv2": ("adv", "adv", True), "sgdwd2": ("sgdwd", "sgdwd", False),
           "smooth2": ("smooth", "adam", True)}


def recipe(model, data: Data, seed: int, name: str, specialise: bool):
    """A child of ``model`` trained with recipe ``name`` (:data:`RECIPES`) on its own data."""
    idx = _subset(data, seed, specialise)
    model = copy.deepcopy(model)
    if name == "adv":
        return adversarial(model, data, idx, 3, 1e-3, seed)
    if name == "sgdwd":
        return train(model, data, idx, 10, 0.05, seed, sgd=True, weight_decay=5e-3)
    if name == "smooth":
        return train(model, data, idx, 3, 1e-3, seed, smoothing=0.1)
    if name == "adapter":
        return adapted(model, data, idx, 5, 3e-3, seed)
    if name == "adam":
        return train(model, data, idx, 3, 1e-3, seed)
    raise ValueError(f"unknown recipe {name!r}; valid: adv, sgdwd, smooth, adapter, adam")


def build(out: Path, seed: int) -> dict[str, str | None]:
    """Train and export every model of one seed; returns model name -> true parent (None: root)."""
    truth: dict[str, str | None] = {}
    for arch in ARCHS:
        _build_arch(arch, out / arch, seed, truth)
    return truth


def _build_arch(arch: str, folder: Path, seed: int, truth: dict) -> None:
    """One architecture's forests and independent models, exported to ``folder``; ``truth``
    gains each model's parent."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    dname, make, epochs, lr = ARCHS[arch]
    data = dataset(dname)
    folder.mkdir(parents=True, exist_ok=True)

    def save(model, name, parent):
        export_torch(model.eval(), data, folder / f"{name}.onnx")
        truth[f"{arch}/{name}"] = None if parent is None else f"{arch}/{parent}"

    def root(k):
        torch.manual_seed(1000 * seed + k)
        return train(make(), data, data.first, epochs, lr, 1000 * seed + k)

    base = 1000 * seed
    r = root(1)
    save(r, f"s{seed}_star_root", None)
    for i in range(4):  # two for other tasks, two for more of the same
        save(fine_tuned(r, data, base + 10 + i, i < 2), f"s{seed}_star_c{i}",
             f"s{seed}_star_root")
    r = root(2)
    save(r, f"s{seed}_chain_root", None)
    prev, prev_name = r, f"s{seed}_chain_root"
    for g in range(3):
        prev = fine_tuned(prev, data, base + 20 + g, g != 1)
        save(prev, f"s{seed}_chain_g{g + 1}", prev_name)
        prev_name = f"s{seed}_chain_g{g + 1}"
    r = root(3)
    name = f"s{seed}_mixed"
    save(r, f"{name}_root", None)
    # a's branch specialises, b's trains more on the same task
    a, b = fine_tuned(r, data, base + 30, True), fine_tuned(r, data, base + 31, False)
    save(a, f"{name}_a", f"{name}_root")
    save(b, f"{name}_b", f"{name}_root")
    save(pruned(r, data, base + 32), f"{name}_p", f"{name}_root")
    a1 = fine_tuned(a, data, base + 33, True)
    save(a1, f"{name}_a1", f"{name}_a")
    save(fine_tuned(a, data, base + 34, True), f"{name}_a2", f"{name}_a")
    b1 = fine_tuned(b, data, base + 35, False)
    save(b1, f"{name}_b1", f"{name}_b")
    save(fine_tuned(b1, data, base + 36, False), f"{name}_b2", f"{name}_b1")
    quantize_dynamic(str(folder / f"{name}_a1.onnx"), str(folder / f"{name}_q.onnx"),
                     weight_type=QuantType.QInt8)
    truth[f"{arch}/{name}_q"] = f"{arch}/{name}_a1"
    r = root(4)
    save(r, f"s{seed}_ladder_root", None)
    prev_name = f"s{seed}_ladder_root"
    for e, m in enumerate(ladder(r, data, base + 40)):
        save(m, f"s{seed}_ladder_e{e + 1}", prev_name)
        prev_name = f"s{seed}_ladder_e{e + 1}"
    for k in (5, 6):
        save(root(k), f"s{seed}_indep_{k}", None)
    r = root(7)
    save(r, f"s{seed}_recipes_root", None)
    made = {"root": r}
    for i, (child, (parent, how, specialise)) in enumerate(RECIPES.items()):
        made[child] = recipe(made[parent], data, base + 70 + i, how, specialise)
        save(made[child], f"s{seed}_recipes_{child}", f"s{seed}_recipes_{parent}")
    # distilled from the recipes' root into a fresh model of its architecture: no weight of the
    # teacher's, so no weight lineage; scored as an independent model (a root of its own)
    torch.manual_seed(base + 8)
    save(distilled(r, make(), data, data.second, epochs, lr, base + 8), f"s{seed}_indep_distil",
         None)


def data_file() -> Dataset:
    """Digits as pixels and as tokens: one file that feeds every architecture."""
    d = dataset("digits")
    ids = np.rint(d.x * 16).astype(np.int64)
    return Dataset({"x": d.x, "input_ids": ids, "attention_mask": np.ones_like(ids)}, d.y,
                   "digits")


# -- scoring -------------------------------------------------------------------------------------

def forest_of(name: str) -> str:
    """``mlp/s1_star_c0`` -> ``mlp/s1_star`` (any folders before the architecture kept)."""
    *folders, rest = name.split("/")
    parts = rest.split("_")
    forest = f"{parts[0]}_{parts[1]}" + (f"_{parts[2]}" if parts[1] == "indep" else "")
    return "/".join([*folders, forest])


def recipe_of(name: str) -> str:
    """The recipe that made a derived model from its parent: the recipes forest's
    (:data:`RECIPES`), ``prune`` and ``int8`` in the mixed forest, ``adam`` for every other
    fine-tune (the star's, chain's, mixed forest's and ladder's)."""
    parts = name.split("/")[-1].split("_")
    if parts[1] == "recipes":
        return RECIPES[parts[2]][1] if parts[2] in RECIPES else "root"
    if parts[1] == "mixed" and parts[2] in ("p", "q"):
        return {"p": "prune", "q": "int8"}[parts[2]]
    return "adam"


def score(truth: dict, parent_of: dict, roots: list) -> dict:
    derived = [m for m, p in truth.items() if p is not None]
    right = [m for m in derived if parent_of.get(m) == truth[m]]
    # the true parent next to the model in the tree, whichever way the edge points
    adjacent = [m for m in derived if parent_of.get(m) == truth[m]
                or parent_of.get(truth[m]) == m]
    true_roots = [m for m, p in truth.items() if p is None and "_indep_" not in m]
    joined = [(c, p) for c, p in parent_of.items() if forest_of(c) != forest_of(p)]
    by_shape, by_recipe = {}, {}
    for m in derived:
        for key, table in ((m.split("/")[-1].split("_")[1], by_shape), (recipe_of(m), by_recipe)):
            ok = table.setdefault(key, [0, 0])
            ok[0] += parent_of.get(m) == truth[m]
            ok[1] += 1
    return {"direct_parent": len(right) / len(derived), "direct_parent_right": len(right),
            "adjacent": len(adjacent) / len(derived),
            "derived": len(derived), "roots_right": sum(r in roots for r in true_roots),
            "forests": len(true_roots),
            "independent_roots": sum(1 for m, p in truth.items() if "_indep_" in m and m in roots
                                     and m not in parent_of),
            "independent": sum(1 for m in truth if "_indep_" in m),
            "joined_across_forests": len(joined), "by_shape": by_shape,
            "by_recipe": by_recipe,
            "wrong": sorted((m, parent_of.get(m), truth[m]) for m in derived
                            if parent_of.get(m) != truth[m])}


def true_edge_votes(truth: dict, result) -> list[dict]:
    """For each true parent -> child edge between two models the tree tested: its recipe and
    each signal's vote (+1 right, -1 wrong, 0 undecided)."""
    from onnx_lineage.zoo.direction import ModelStats, votes
    stats = {k: ModelStats(**v) for k, v in result.stats.items()}
    return [{"parent": parent, "child": child, "recipe": recipe_of(child),
             "votes": votes(stats[parent], stats[child])}
            for child, parent in truth.items()
            if parent is not None and parent in stats and child in stats]


def signal_votes(edges: list[dict], recipe: str | None = None) -> dict:
    """Each signal's tally of right, wrong and undecided votes over :func:`true_edge_votes`
    (of one recipe, or all)."""
    tally = {}
    for e in edges:
        if recipe is not None and e["recipe"] != recipe:
            continue
        for name, v in e["votes"].items():
            t = tally.setdefault(name, {"right": 0, "wrong": 0, "undecided": 0})
            t["right" if v > 0 else "wrong" if v < 0 else "undecided"] += 1
    return tally


def edge_directions(truth: dict, edges: list[dict]) -> list[dict]:
    """Each forest edge that joins a true parent and child (whichever way it points): its
    confidence and whether it points the right way, to check that the confidence is
    calibrated."""
    out = []
    for e in edges:
        p, c = e["parent"], e["child"]
        if truth.get(c) == p or truth.get(p) == c:
            out.append({"parent": p, "child": c, "confidence": e["confidence"],
                        "right": truth.get(c) == p,
                        "recipe": recipe_of(c if truth.get(c) == p else p)})
    return out


def inheritance_shares(folder: Path, truth: dict) -> dict:
    """The share of a model's own change that another carries (``zoo.inheritance``), on every
    true triple: ``chains`` (``q -> p -> c``: should read about 1) and ``siblings`` (``p`` and
    ``c`` both children of ``q``: about 0), each with the shared directions taken out (as
    ``tree`` reads it) and without (``plain``: the projection alone)."""
    from onnx_lineage.model.loading import load_model
    from onnx_lineage.zoo.tree import shares_of
    loaded = {m: load_model(folder / f"{m}.onnx") for m in truth}
    share = shares_of(loaded, 0)  # each pair aligned once for both readings
    chains = [(truth[p], p, c) for c, p in truth.items() if p is not None and truth[p] is not None]
    kids: dict = {}
    for c, p in truth.items():
        if p is not None:
            kids.setdefault(p, []).append(c)
    siblings = [(q, x, y) for q, cs in kids.items() for i, x in enumerate(sorted(cs))
                for y in sorted(cs)[i + 1:]]
    return {kind: [{"triple": list(t), "share": share(*t), "plain": share(*t, shared_rank=0)}
                   for t in triples]
            for kind, triples in (("chains", chains), ("siblings", siblings))}


def inheritance_table(rows: dict) -> list[str]:
    """Per reading: true chains read as siblings (share < 0.5) and sibling pairs read as
    parent and child (>= 0.5), pooled over the seeds."""
    from onnx_lineage.zoo.inheritance import CHILD_SHARE
    out = []
    for key, name in (("plain", "plain projection"), ("share", "shared directions taken out")):
        got = {kind: [t[key] for row in rows.values()
                      for t in row.get("inheritance", {}).get(kind, []) if t[key] is not None]
               for kind in ("chains", "siblings")}
        if not got["chains"]:
            continue
        ch, sib = np.array(got["chains"]), np.array(got["siblings"])
        out.append(f"| {name} | {int(np.sum(ch < CHILD_SHARE))} of {ch.size} "
                   f"(median {np.median(ch):.2f}) | {int(np.sum(sib >= CHILD_SHARE))} of "
                   f"{sib.size} (median {np.median(sib):.2f}) |")
    return out


#: Confidence bands of the calibration table: (name, from, below).
BANDS = (("< 0.75", 0.0, 0.75), ("0.75-0.9", 0.75, 0.9), ("0.9-0.99", 0.9, 0.99),
         (">= 0.99", 0.99, 1.01))


def calibration(rows: dict) -> list[tuple[str, int, float, float, int]]:
    """Per confidence band (:data:`BANDS`), pooled over the seeds: (band, edges, mean
    confidence, share pointing the right way, edges pointing the wrong way)."""
    edges = [e for row in rows.values() for e in row["tree"].get("edge_directions", [])]
    out = []
    for name, lo, hi in BANDS:
        sel = [e for e in edges if lo <= e["confidence"] < hi]
        if sel:
            out.append((name, len(sel), float(np.mean([e["confidence"] for e in sel])),
                        float(np.mean([e["right"] for e in sel])),
                        sum(1 for e in sel if not e["right"])))
    return out


def bands_hold(rows: dict) -> bool:
    """Whether in every band from 0.9 up the share pointing the right way is at least the
    band's lower bound."""
    lower = {name: lo for name, lo, _ in BANDS}
    return all(right >= lower[name] for name, _, _, right, _ in calibration(rows)
               if lower[name] >= 0.9)


def mother(result) -> dict[str, str]:
    """MoTHer's rule on the tree's related groups: a minimum spanning arborescence over the
    distances, an edge from higher to lower kurtosis paying a penalty (the median distance of the
    group), per group. Returns child -> parent."""
    import networkx as nx
    groups = nx.Graph()
    groups.add_nodes_from(result.models)
    dist = {}
    for p in result.related:
        groups.add_edge(p["a"], p["b"])
        dist[(p["a"], p["b"])] = dist[(p["b"], p["a"])] = p["distance"]
    parent_of = {}
    for comp in nx.connected_components(groups):
        if len(comp) < 2:
            continue
        kurt = {m: result.stats[m]["kurtosis"] for m in comp}
        penalty = float(np.median([d for (a, b), d in dist.items() if a in comp]))
        g = nx.DiGraph()
        for (a, b), d in dist.items():
            if a in comp:
                g.add_edge(a, b, weight=d + (penalty if kurt[b] < kurt[a] else 0.0))
        try:
            arb = nx.minimum_spanning_arborescence(g)
        except nx.NetworkXException:
            continue
        parent_of.update({c: p for p, c in arb.edges()})
    return parent_of


def run(out: Path, seeds: list[int], reuse: bool = False) -> dict:
    """Build each seed's models in ``out`` (``reuse``: read those an earlier run built there,
    with their ``truth.json``) and score ``tree`` and MoTHer's rule on them."""
    import json
    from onnx_lineage.zoo import tree
    rows = {}
    for seed in seeds:
        t0 = time.perf_counter()
        saved = out / f"seed{seed}" / "truth.json"
        if reuse and saved.exists():
            truth = json.loads(saved.read_text())
        else:
            truth = build(out / f"seed{seed}", seed)
            saved.write_text(json.dumps(truth, indent=1))
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = tree([out / f"seed{seed}"], data_file(), seed=0, with_closeness=False)
        seconds = time.perf_counter() - t0
        parent_of = {e["child"]: e["parent"] for e in r.edges}
        mo = mother(r)
        rows[seed] = {"tree": {**score(truth, parent_of, r.roots),
                               "edge_directions": edge_directions(truth, r.edges)},
                      "mother": score(truth, mo, [m for m in r.models if m not in mo]),
                      "signals": signal_votes(true_edge_votes(truth, r)),
                      "edge_votes": true_edge_votes(truth, r), "models": len(truth),
                      "exact_tests": r.exact_tests, "build_seconds": built,
                      "tree_seconds": seconds, "notes": r.notes,
                      "inheritance": inheritance_shares(out / f"seed{seed}", truth),
                      "undecided_edges": sum(1 for e in r.edges if e["direction"] == "undecided")}
        t = rows[seed]["tree"]
        print(f"seed {seed}: direct parent {t['direct_parent']:.0%}, roots {t['roots_right']}/"
              f"{t['forests']}, joined {t['joined_across_forests']}; MoTHer "
              f"{rows[seed]['mother']['direct_parent']:.0%} ({seconds:.0f} s)", file=sys.stderr)
    return rows


def fit(rows: dict, recipe: str | None = None) -> dict:
    """Each weak signal's accuracy where it decides, pooled over the seeds (on the edges of one
    recipe, or all)."""
    total = signal_votes([e for row in rows.values() for e in row.get("edge_votes", [])], recipe)
    if not total:  # a file written before the votes were kept per edge
        for row in rows.values():
            for name, t in row["signals"].items():
                acc = total.setdefault(name, {"right": 0, "wrong": 0, "undecided": 0})
                for k in acc:
                    acc[k] += t[k]
    return {name: {"accuracy": t["right"] / max(t["right"] + t["wrong"], 1), **t}
            for name, t in total.items()}


def fitted_weights(rows: dict) -> dict[str, float]:
    """The signals' weights fitted together on every true edge of every recipe
    (:func:`onnx_lineage.zoo.direction.fit_weights`)."""
    from onnx_lineage.zoo.direction import fit_weights
    edges = [e["votes"] for row in rows.values() for e in row["edge_votes"]]
    names = sorted(edges[0])
    w = fit_weights(np.array([[e[k] for k in names] for e in edges]))
    return {k: round(float(x), 4) for k, x in zip(names, w)}


def markdown(rows: dict) -> str:
    header = ("| seed | method | direct parent | parent adjacent | star | chain | mixed | ladder | "
              "recipes | roots | independent roots | joined across forests |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for seed, row in rows.items():
        for method in ("tree", "mother"):
            s = row[method]
            shape = {k: f"{v[0]}/{v[1]}" for k, v in s["by_shape"].items()}
            lines.append(f"| {seed} | {method} | **{s['direct_parent']:.0%}** "
                         f"({s['direct_parent_right']}/{s['derived']}) | {s['adjacent']:.0%} | "
                         f"{shape.get('star', '-')} | "
                         f"{shape.get('chain', '-')} | {shape.get('mixed', '-')} | "
                         f"{shape.get('ladder', '-')} | {shape.get('recipes', '-')} | "
                         f"{s['roots_right']}/{s['forests']} | "
                         f"{s['independent_roots']}/{s['independent']} | "
                         f"{s['joined_across_forests']} |")
    lines += ["", "| signal | right | wrong | undecided | accuracy where it decides |",
              "|---|---|---|---|---|"]
    for name, t in fit(rows).items():
        lines.append(f"| {name} | {t['right']} | {t['wrong']} | {t['undecided']} | "
                     f"{t['accuracy']:.0%} |")
    lines += recipe_table(rows)
    shares = inheritance_table(rows)
    if shares:
        lines += ["", "| inheritance, true triples | chains read as siblings (< 0.5) | "
                  "siblings read as parent and child (>= 0.5) |", "|---|---|---|", *shares]
    bands = calibration(rows)
    if bands:
        lines += ["", "| edges between a true parent and child, by confidence | edges | "
                  "mean confidence | pointing the right way | wrong way |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {n} | {conf:.3f} | {right:.1%} | {bad} |"
                  for name, n, conf, right, bad in bands]
    return "\n".join(lines)


def recipe_table(rows: dict) -> list[str]:
    """Per recipe, pooled over the seeds: derived models with their true parent as forest
    parent, the forest's edges between a true parent and child pointing the right way, and each
    signal's accuracy where it decides (right of decided)."""
    if not any("edge_votes" in row for row in rows.values()):
        return []
    recipes = sorted({e["recipe"] for row in rows.values() for e in row["edge_votes"]})
    names = sorted(fit(rows))
    lines = ["", "| recipe | direct parent | direction right (edges, mean confidence) | "
             + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for r in recipes:
        ok = [row["tree"]["by_recipe"].get(r, [0, 0]) for row in rows.values()]
        dirs = [e for row in rows.values() for e in row["tree"]["edge_directions"]
                if e["recipe"] == r]
        conf = f"{np.mean([e['confidence'] for e in dirs]):.2f}" if dirs else "-"
        t = fit(rows, r)
        lines.append(f"| {r} | {sum(o[0] for o in ok)}/{sum(o[1] for o in ok)} | "
                     f"{sum(e['right'] for e in dirs)}/{len(dirs)} ({conf}) | "
                     + " | ".join(f"{t[k]['right']}/{t[k]['right'] + t[k]['wrong']}"
                                  for k in names) + " |")
    return lines


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    cli.add_from(ap)
    cli.add_json(ap)
    ap.add_argument("--fit", action="store_true", help="write direction_signals.json")
    ap.add_argument("--reuse", action="store_true",
                    help="read the models an earlier run built in OUT instead of training them")
    cli.add_markdown(ap)
    cli.add_check(ap, help="exit 1 unless no model is joined across forests and every "
                           "independent model is a root (CI)")
    args = ap.parse_args()
    if args.source:
        saved = results.read_json(args.source)
        rows, args.seeds = saved["rows"], saved.get("seeds", args.seeds)
    else:
        if args.out is None:
            ap.error("give a folder for the models, or --from")
        rows = run(args.out, args.seeds, args.reuse)
        if args.json:
            results.write_json(args.json, {"machine": machine(python=False), "seeds": args.seeds,
                                           "rows": rows})
    if args.fit:
        results.write_json(SIGNALS_JSON, {
            "fitted_by": f"benchmarks/forests.py --fit --seeds {' '.join(map(str, args.seeds))}",
            "signals": fit(rows), "weights": fitted_weights(rows)}, newline=True)
        print(f"wrote {SIGNALS_JSON}", file=sys.stderr)
    if args.markdown:
        print(markdown(rows))
    if args.check:
        bad = [seed for seed, row in rows.items()
               if row["tree"]["joined_across_forests"]
               or row["tree"]["independent_roots"] != row["tree"]["independent"]]
        if bad:
            sys.exit(f"forests: models joined across forests or independent models not roots "
                     f"(seeds {bad})")


if __name__ == "__main__":
    main()
