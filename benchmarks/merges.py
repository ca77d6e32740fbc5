"""Merges and adapters with known recipes: does ``attribute`` find the parents, their shares and
the recipe, and does ``determine`` give a merged adapter's rank?

    python benchmarks/merges.py /tmp/merges --seeds 3 4 --json benchmarks/results/merges.json
    python benchmarks/merges.py --from benchmarks/results/merges.json --markdown

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

Adapters (``mnist_wide``, 784-512-512-10 on MNIST): a base, and the base with a rank-r adapter
(LoRA on every Linear, :func:`families.adapted`) trained and merged, r in 4, 8, 16, 32, 64;
``determine``'s difference (:func:`onnx_lineage.analyses.lowrank.difference`) gives each layer's
rank, which should be ``min(r, rows, columns)``.

The method's settings (the share interval's level, SLERP's tolerance, the value-by-value
readings' thresholds, the adapter's alternating fit) were set on the synthetic MLPs of
tests/analyses/test_attribution.py; a first run on seeds 1 and 2 found the DARE reading's two
faults (coefficients rounded, kept values miscounted), mended without a new threshold, so the
reported seeds are 3 and 4, run once after.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np

import harness

harness.checkout_first()
from harness import cli  # noqa: E402
from harness.machine import machine  # noqa: E402

FAMILIES = ("digits_mlp", "digits_cnn")
PARENTS = 4


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


def _models(family: str, seed: int, out: Path) -> dict:
    """The base, parents and look-alikes exported: their paths by name, their state dicts by
    name, the base model (the template merges are loaded into) and the data."""
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
    return {name: F.export_torch(m.eval(), data, out / f"{name}.onnx", keep_bn=True)
            for name, m in models.items()}, {n: _state(m) for n, m in models.items()}, base, data


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
    import families as F
    from onnx_lineage.analyses.attribution import attribute
    out.mkdir(parents=True, exist_ok=True)
    paths, states, template, data = _models(family, seed, out)
    rows = []
    gen = torch.Generator().manual_seed(seed)
    for name, recipe, k, w, with_base in _merges(seed):
        used = [states[f"p{i + 1}"] for i in range(k)]
        make = MAKE[recipe]
        state = (make(used, w[0]) if recipe == "slerp" else
                 make(used, w, states["base"], generator=gen) if recipe == "dare" else
                 make(used, w, states["base"]))
        path = F.export_torch(_load(template, state), data, out / f"{name}.onnx", keep_bn=True)
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


def _attributed(name: str, recipe: str, truth, r, family: str, seed: int) -> dict:
    shares = [s.share for s in r.parents]
    related = [s.related for s in r.parents]
    error = None
    if truth is not None and all(s is not None for s in shares[:len(truth)]):
        error = max(abs(s - t) for s, t in zip(shares, truth))
    return {"family": family, "seed": seed, "case": name, "recipe": recipe, "found": r.recipe,
            "truth": truth, "shares": shares, "related": related,
            "p_values": [s.p_value for s in r.parents], "share_error": error,
            "remainder_rank": r.remainder_rank, "statement": r.statement, "seconds": r.seconds}


def run_adapters(seed: int, out: Path, ranks=(4, 8, 16, 32, 64)) -> list:
    """mnist_wide and its merged adapters: each layer's rank found by determine's difference."""
    import families as F
    from onnx_lineage.analyses.lowrank import difference
    from onnx_lineage.matching import match
    out.mkdir(parents=True, exist_ok=True)
    data = F.family_data("mnist_wide")
    base = F.trained("mnist_wide", seed)
    base_path = F.export_torch(base.eval(), data, out / "base.onnx")
    rows = []
    for r in ranks:
        child = F.adapted(base, data, data.second, 3, 1e-3, seed * 10 + r, rank=r)
        path = F.export_torch(child, data, out / f"adapter_{r}.onnx")
        t0 = time.perf_counter()
        d = difference(match(base_path, path))
        rows.append({"seed": seed, "rank": r, "seconds": time.perf_counter() - t0,
                     "layers": [{"a": x.a, "shape": x.shape, "found": x.rank,
                                 "expected": min(r, *x.shape), "low": x.low}
                                for x in d.layers], "adapter": d.adapter, "statement": d.statement})
    return rows


def summary(doc: dict) -> str:
    """The tables of RESULTS.md."""
    rows, adapters = doc["merges"], doc["adapters"]
    lines = [f"Machine: {doc['machine']}", "",
             "| recipe | cases | recipe found | share error (max over parents): median, worst | "
             "false shares (an unrelated candidate given one) |", "|---|---|---|---|---|"]
    for recipe in ("linear", "slerp", "task arithmetic", "ties", "dare", "fine-tune", "none"):
        got = [r for r in rows if r["recipe"] == recipe]
        if not got:
            continue
        errs = [r["share_error"] for r in got if r["share_error"] is not None]
        found = {}
        for r in got:
            found[r["found"]] = found.get(r["found"], 0) + 1
        said = ", ".join(f"{k} {v}" for k, v in sorted(found.items(), key=lambda kv: -kv[1]))
        false = sum(1 for r in got for s, rel in zip(r["shares"], r["related"])
                    if s is not None and not rel)
        lines.append(f"| {recipe} | {len(got)} | {said} | "
                     + (f"{np.median(errs):.4f}, {max(errs):.4f}" if errs else "-")
                     + f" | {false} |")
    right = sum(1 for a in adapters for x in a["layers"] if x["found"] == x["expected"])
    total = sum(len(a["layers"]) for a in adapters)
    merges = ("linear", "slerp", "task arithmetic", "ties", "dare")
    alike = [r for r in rows if r["recipe"] in ("fine-tune", "none")]
    called = sum(1 for r in alike if r["found"] in merges
                 or (r["found"] == "adapter" and "combination" in r["statement"]))
    lines += ["", f"Look-alikes called a merge: {called} of {len(alike)}"]
    lines += ["", f"Merged adapters: {right} of {total} layers with rank exactly "
                  "min(r, rows, columns)", "", "| seed | r | ranks found by layer | expected |",
              "|---|---|---|---|"]
    for a in adapters:
        lines.append(f"| {a['seed']} | {a['rank']} | {[x['found'] for x in a['layers']]} | "
                     f"{[x['expected'] for x in a['layers']]} |")
    return "\n".join(lines)


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 4])
    cli.add_json(ap)
    cli.add_from(ap)
    cli.add_markdown(ap)
    args = ap.parse_args()

    def build(out: Path) -> dict:
        t0 = time.perf_counter()
        merges, adapters = [], []
        for seed in args.seeds:
            for family in FAMILIES:
                merges += run_family(family, seed, out / f"{family}_{seed}")
            adapters += run_adapters(seed, out / f"adapters_{seed}")
        return {"machine": machine(), "seeds": args.seeds, "merges": merges,
                "adapters": adapters, "seconds": time.perf_counter() - t0}

    doc = cli.document(args, build)
    print(summary(doc))


if __name__ == "__main__":
    main()
