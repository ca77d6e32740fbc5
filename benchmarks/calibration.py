"""Calibration of the verdict: error rates of ``determine`` on many independent pairs, and its
power on derived models.

    python benchmarks/calibration.py OUT_DIR [--zoo ZOO_DIR] [--json OUT.json] [--png OUT.png]
                                     [--seeds 0 1 2 3 4] [--reuse] [--reduced] [--check]
                                     [--markdown]
    python benchmarks/calibration.py --from OUT.json --markdown   # the tables of a past run

Independent pairs (relation ``unrelated``): for every family of benchmarks/families.py, models
trained from seeds 0-6 with one recipe (21 pairs a family), plus MNIST MLPs trained on the other
half of the data, MLPs with a layer dropped against independent MLPs of that shape, and
LogisticRegressions (convex: the right answer is ``undetermined``). None of these seeds was used
to fit the aligned test's null (benchmarks/fit_null.py, seeds 1000-1005), and the families
``HELD_OUT`` there were not used at all. Derived pairs (relation ``related``): children of seed 0
of every PyTorch family (fine-tuned, pruned 50% and 90%, noisy, and for MLPs permuted and
rescaled, also fine-tuned afterwards), detectors sharing one pretrained backbone under new necks
and heads, and with ``--zoo`` every pair of the lineage zoo (benchmarks/zoo.py), whose kinds are
named by its ladders and members. Reported apart (relation ``shared_init``): MNIST MLPs trained
from one random initialisation on the two halves of the data, which share their initialisation
and nothing else.

Every pair runs ``determine`` at alpha 0.01 with all three tests (``all_tests``), so each test's
p-value is known for every pair; a verdict at another level reads the same combined p-value.
Writes every row and the summary (``--json``), and a plot of the independent pairs' p-values
against the uniform distribution (``--png``). ``--seeds``: run every pair at each of these
``determine`` seeds (default 0; the error rates and tables are the first seed's) and report how
stable the verdicts are: the pairs whose verdict differs between seeds, and how the basin test's
copies decided (stopped at a boundary, or undecided at the most copies). The first seed runs
every test; the others run ``determine`` as a user does, the basin test only where the data-free
tests have not rejected independence. Their verdicts are those every test would give at that
seed (the basin test only adds to a rejection already made, and it draws its copies last), while
a derived pair spares the thousands of copies that show B below every one. ``--reduced``: three
families, three training seeds (the check CI runs). The pairs built are listed in
``OUT_DIR/pairs.json``; ``--reuse`` reads them from there instead of training again. ``--check`` exits 1 when an independent pair
is called related at 0.01, a LogisticRegression pair is not undetermined, a derived pair is not
related, or a pair's verdict differs between seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import harness

harness.checkout_first()
import families  # noqa: E402
from fit_null import FIT_FAMILIES, FIT_SEEDS  # noqa: E402
from harness import cli, results  # noqa: E402

from onnx_lineage.analyses.determination import determine  # noqa: E402
from onnx_lineage.data import Dataset  # noqa: E402

ALPHA = 0.01
LEVELS = (0.05, 0.01)
SEEDS = tuple(range(7))
REDUCED = {"families": ("iris_mlp", "digits_cnn", "logreg"), "seeds": (0, 1, 2),
           "children": ("iris_mlp",)}


def dataset_for(family: str) -> Dataset:
    d = families.family_data(family).npz()
    y = d.pop("y")
    return Dataset(d, y, family)


def independent_pairs(out: Path, reduced: bool) -> list[dict]:
    """Build the independent models; the pairs to test."""
    fams = REDUCED["families"] if reduced else families.FAMILIES
    seeds = REDUCED["seeds"] if reduced else SEEDS
    assert not set(seeds) & set(FIT_SEEDS)
    pairs = []
    for fam in fams:
        t0 = time.perf_counter()
        if fam == "deep_mlp":  # a layer dropped from a trained model, against independent ones
            dropped = [families.build(fam, s, out / fam, "dropped") for s in seeds[:4]]
            shallow = [families.build(fam, 10 + s, out / fam, "shallow") for s in seeds[:4]]
            combos = itertools.product(dropped, shallow)
        else:
            paths = [families.build(fam, s, out / fam) for s in seeds]
            combos = list(itertools.combinations(paths, 2))
            if fam == "mnist_wide" and not reduced:
                other = families.build(fam, 0, out / fam, "other")
                combos += [(p, other) for p in paths]
        for a, b in combos:
            pairs.append({"family": fam, "a": str(a), "b": str(b), "relation": "unrelated",
                          "kind": "independent" if fam != "logreg" else "convex",
                          "fitted_family": fam in FIT_FAMILIES})
        print(f"{fam}: models in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return pairs


def derived_pairs(out: Path, reduced: bool) -> list[dict]:
    fams = REDUCED["children"] if reduced else [f for f in families.TORCH if f != "deep_mlp"]
    pairs = []
    for fam in fams:
        parent = families.build(fam, 0, out / fam)
        for kind, path in families.children(fam, 0, out / f"{fam}_children").items():
            pairs.append({"family": fam, "a": str(parent), "b": str(path), "relation": "related",
                          "kind": kind, "fitted_family": fam in FIT_FAMILIES})
    if not reduced:
        # two detectors on one pretrained backbone; they score other labels than the digits'
        # (TASKS), and each pair two label spaces: fed without labels (each model's own
        # predictions are its targets), since labels out of a model's range are refused
        for s in SEEDS[:2]:
            pairs.append({"family": "mobile_cnn", "relation": "related", "kind": "shared_backbone",
                          "a": str(families.detector(s, 1, out / "detectors")),
                          "b": str(families.detector(s, 2, out / "detectors")),
                          "fitted_family": False, "labels": False})
        pairs += [{"family": "mobile_cnn", "relation": "unrelated", "kind": "independent",
                   "a": str(families.detector(s, 1, out / "detectors")),
                   "b": str(families.detector(t, 3, out / "detectors")), "fitted_family": False,
                   "labels": False}
                  for s, t in ((0, 1), (1, 2), (2, 0))]
        for s in SEEDS[:2]:  # the same initialisation, the other half of the data
            pairs.append({"family": "mnist_wide", "relation": "shared_init", "kind": "same_init",
                          "a": str(families.build("mnist_wide", s, out / "mnist_wide")),
                          "b": str(families.build("mnist_wide", s, out / "mnist_wide",
                                                  "same_init_other")),
                          "fitted_family": True})
        # the layer-dropped MLP against its own parent
        for s in SEEDS[:2]:
            parent = families.export_torch(families.trained("deep_mlp", s),
                                           families.family_data("deep_mlp"),
                                           out / "deep_mlp" / f"deep_mlp_parent_{s}.onnx")
            pairs.append({"family": "deep_mlp", "a": str(parent),
                          "b": str(out / "deep_mlp" / f"deep_mlp_dropped_{s}.onnx"),
                          "relation": "related", "kind": "layer_dropped", "fitted_family": False})
    return pairs


def zoo_pairs(zoo: Path) -> list[dict]:
    spec = results.read_json(zoo / "zoo.json")
    pairs = []
    for p in spec["pairs"]:
        a, b = p["a"].split("/")[1], p["b"].split("/")[1]
        kind = p["ladder"] or b.rstrip("0123456789_").removesuffix("_") or b
        if p["relation"] == "unrelated":
            kind = "independent"
        elif a == "sibling":
            kind = "siblings"
        elif a.startswith("chain"):
            kind = "chain step"
        pairs.append({"family": "zoo/" + p["a"].split("/")[0], "a": str(zoo / f"{p['a']}.onnx"),
                      "b": str(zoo / f"{p['b']}.onnx"), "relation": p["relation"], "kind": kind,
                      "fitted_family": False, "zoo_family": p["a"].split("/")[0]})
    return pairs


def zoo_dataset(family: str) -> Dataset:
    from accuracy import zoo_data
    return zoo_data(family)


def run(pairs: list[dict], seeds: tuple = (0,)) -> list[dict]:
    """Every pair at every seed: one row each, the seeds of a pair together (every test at the
    first seed, the basin test where needed at the others)."""
    rows, data_cache = [], {}
    for k, p in enumerate(pairs):
        key = p.get("zoo_family") or p["family"]
        if key not in data_cache:
            data_cache[key] = zoo_dataset(key) if "zoo_family" in p else dataset_for(key)
        data = data_cache[key]
        if p.get("labels") is False:
            data = dataclasses.replace(data, y=None)
        for seed in seeds:
            t0 = time.perf_counter()
            r = determine(p["a"], p["b"], data, alpha=ALPHA, all_tests=seed == seeds[0],
                          seed=seed)
            tests = {t.name: t.p_value for t in r.tests}
            basin = r.test("basin")
            rows.append(dict(p, seed=seed, verdict=r.verdict, p_value=r.p_value, tests=tests,
                             basin_monte_carlo=basin.monte_carlo if basin else None,
                             shared_layers=r.shared_layers, seconds=time.perf_counter() - t0,
                             reason=r.reason))
            print(f"[{k + 1}/{len(pairs)}] {p['family']:>12s} {p['kind']:>14s} seed {seed} "
                  f"{r.verdict:12s} p={r.p_value:.2g} ({time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr)
    return rows


def stability(rows: list[dict]) -> dict:
    """How the verdicts and the basin test's decisions vary with ``determine``'s seed."""
    by_pair = defaultdict(list)
    for r in rows:
        by_pair[(r["family"], r["a"], r["b"])].append(r)
    differing = [{"pair": [fam, Path(a).stem, Path(b).stem],
                  "verdicts": {str(r.get("seed", 0)): r["verdict"] for r in rs}}
                 for (fam, a, b), rs in by_pair.items() if len({r["verdict"] for r in rs}) > 1]
    mc = [r["basin_monte_carlo"] for r in rows if r.get("basin_monte_carlo")]
    decided = defaultdict(int)
    for m in mc:
        decided[m["decided"]] += 1
    copies = [m["copies"] for m in mc]
    first = first_seed(rows)
    return {"seeds": sorted({r.get("seed", 0) for r in rows}), "pairs": len(by_pair),
            "same_verdict_every_seed": len(by_pair) - len(differing), "differing": differing,
            "basin_decided": dict(decided),
            "basin_copies": {"median": float(np.median(copies)), "max": int(max(copies)),
                             "total": int(sum(copies))} if copies else None,
            # at the first seed: an independent pair's copies, and a derived pair's decided below
            "independent_copies": _spread(first, lambda r: r["relation"] == "unrelated"),
            "below_copies": _spread(first, lambda r: r["relation"] == "related" and
                                    r["basin_monte_carlo"]["decided"] == "below"),
            "seconds_by_seed": {str(s): float(sum(r["seconds"] for r in rows
                                                  if r.get("seed", 0) == s))
                                for s in sorted({r.get("seed", 0) for r in rows})}}


def _spread(rows: list[dict], which) -> dict | None:
    """Median, mean and count of the basin copies of the ``rows`` that ran it and ``which``
    selects."""
    copies = [r["basin_monte_carlo"]["copies"] for r in rows
              if r.get("basin_monte_carlo") and which(r)]
    return {"median": float(np.median(copies)), "mean": float(np.mean(copies)),
            "runs": len(copies)} if copies else None


def clopper_pearson(k: int, n: int, conf: float = 0.95) -> list[float]:
    """Exact binomial interval for ``k`` successes out of ``n``."""
    from scipy.stats import beta
    lo = 0.0 if k == 0 else float(beta.ppf((1 - conf) / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - (1 - conf) / 2, k + 1, n - k))
    return [lo, hi]


def first_seed(rows: list[dict]) -> list[dict]:
    """The rows of the first seed run (rows of runs before ``--seeds`` have none: seed 0)."""
    first = min(r.get("seed", 0) for r in rows)
    return [r for r in rows if r.get("seed", 0) == first]


def summarise(rows: list[dict]) -> dict:
    """Error rates and tables from the first seed's rows; stability over all of them."""
    every, rows = rows, first_seed(rows)
    neg = [r for r in rows if r["relation"] == "unrelated"]
    pos = [r for r in rows if r["relation"] == "related"]
    out = {"independent_pairs": len(neg), "derived_pairs": len(pos),
           "families": sorted({r["family"] for r in neg})}
    for level in LEVELS:
        k = sum(r["p_value"] <= level for r in neg)
        out[f"fpr_{level}"] = {"false_positives": k, "pairs": len(neg),
                               "rate": k / max(len(neg), 1), "ci95": clopper_pearson(k, len(neg))}
        for test in ("unit_order", "aligned", "same_values", "basin"):
            ps = [r["tests"].get(test) for r in neg if r["tests"].get(test) is not None]
            out[f"fpr_{level}"][f"{test}_alone"] = (
                sum(p <= level for p in ps) / len(ps) if ps else None)
    out["smallest_independent_p"] = min((r["p_value"], r["family"], Path(r["a"]).stem,
                                         Path(r["b"]).stem) for r in neg) if neg else None
    verdicts = defaultdict(lambda: defaultdict(int))
    for r in neg:
        verdicts[r["family"]][r["verdict"]] += 1
    out["independent_verdicts_by_family"] = {f: dict(v) for f, v in sorted(verdicts.items())}
    held = [r for r in neg if not r["fitted_family"]]
    out["fpr_0.01_families_not_in_null_fit"] = {
        "pairs": len(held), "false_positives": sum(r["p_value"] <= 0.01 for r in held)}
    kinds = defaultdict(list)
    for r in pos:
        kinds[r["kind"]].append(r)
    out["tpr_by_kind"] = {k: {"pairs": len(v), "related": sum(r["verdict"] == "related" for r in v),
                              "rate": sum(r["verdict"] == "related" for r in v) / len(v),
                              "verdicts": dict(_count(r["verdict"] for r in v)),
                              "largest_p": max(r["p_value"] for r in v)}
                          for k, v in sorted(kinds.items())}
    out["shared_init"] = [{"pair": [Path(r["a"]).stem, Path(r["b"]).stem],
                           "verdict": r["verdict"], "p_value": r["p_value"]}
                          for r in rows if r["relation"] == "shared_init"]
    out["shared_backbone"] = [{"pair": [Path(r["a"]).stem, Path(r["b"]).stem],
                               "verdict": r["verdict"], "shared_layers": r["shared_layers"]}
                              for r in pos if r["kind"] == "shared_backbone"]
    out["seconds_per_pair"] = {"median": float(np.median([r["seconds"] for r in rows])),
                               "max": float(max(r["seconds"] for r in rows))}
    out["stability"] = stability(every)
    return out


def markdown(summary: dict) -> str:
    """The summary as the tables of benchmarks/RESULTS.md."""
    out = ["| level | independent pairs called related | rate | 95% interval (Clopper-Pearson) "
           "| unit order alone | aligned alone | same values alone | basin alone |",
           "|---|---|---|---|---|---|---|---|"]
    for level in LEVELS:
        f = summary[f"fpr_{level}"]
        out.append(f"| {level} | {f['false_positives']} of {f['pairs']} | {f['rate']:.2%} | "
                   f"{f['ci95'][0]:.2%} - {f['ci95'][1]:.2%} | {_pct(f['unit_order_alone'])} | "
                   f"{_pct(f['aligned_alone'])} | {_pct(f.get('same_values_alone'))} | "
                   f"{_pct(f['basin_alone'])} |")
    out += ["", "| family | independent pairs | related | unrelated | undetermined |",
            "|---|---|---|---|---|"]
    for fam, v in summary["independent_verdicts_by_family"].items():
        out.append(f"| {fam} | {sum(v.values())} | {v.get('related', 0)} | "
                   f"{v.get('unrelated', 0)} | {v.get('undetermined', 0)} |")
    out += ["", "| derived kind | pairs | related | largest p-value |", "|---|---|---|---|"]
    for kind, v in summary["tpr_by_kind"].items():
        out.append(f"| {kind} | {v['pairs']} | {v['related']} | {v['largest_p']:.1e} |")
    st = summary.get("stability")
    if st and st["basin_copies"]:  # runs before the sequential basin test have no record
        copies = st["basin_copies"]
        out += ["", "| seeds | pairs | same verdict at every seed | basin decided below / above "
                "/ undecided at the most copies | copies per basin test (median, max) |",
                "|---|---|---|---|---|",
                f"| {', '.join(map(str, st['seeds']))} | {st['pairs']} | "
                f"{st['same_verdict_every_seed']} | {st['basin_decided'].get('below', 0)} / "
                f"{st['basin_decided'].get('above', 0)} / {st['basin_decided'].get('limit', 0)} | "
                f"{copies.get('median', 0):.0f}, {copies.get('max', 0)} |"]
        out += [f"- {' '.join(d['pair'])}: {d['verdicts']}" for d in st["differing"]]
        ind, below = st.get("independent_copies"), st.get("below_copies")
        if ind and below:
            out += ["", f"At seed {st['seeds'][0]}: an independent pair's basin test drew a median "
                    f"of {ind['median']:.0f} copies (mean {ind['mean']:.0f}, {ind['runs']} runs); "
                    f"a derived pair decided below its level, {below['median']:.0f} "
                    f"({below['runs']} runs). Seconds by seed: " + ", ".join(
                        f"{s}: {t:.0f}" for s, t in st["seconds_by_seed"].items()) + "."]
    return "\n".join(out)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.2%}"


def _count(items) -> dict:
    c = defaultdict(int)
    for i in items:
        c[i] += 1
    return c


def qq_plot(rows: list[dict], path: Path) -> None:
    """Independent pairs' p-values (combined and per test) against the uniform distribution."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    neg = [r for r in rows if r["relation"] == "unrelated"]
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    series = [("combined (verdict)", [r["p_value"] for r in neg], "#222")]
    series += [(name, [r["tests"][key] for r in neg if r["tests"].get(key) is not None], color)
               for name, key, color in (("unit order", "unit_order", "#1f5fa8"),
                                        ("aligned", "aligned", "#e67e22"),
                                        ("basin", "basin", "#27ae60"))]
    for label, ps, color in series:
        if not ps:
            continue
        p = np.sort(np.clip(ps, 1e-12, 1))
        u = np.arange(1, p.size + 1) / (p.size + 1)
        ax.plot(-np.log10(u), -np.log10(p), ".", ms=4, color=color, label=f"{label} ({p.size})")
    top = max(3.0, -math.log10(1 / (len(neg) + 1)) + 0.5)
    ax.plot([0, top], [0, top], "--", color="#999", label="uniform (a valid test)")
    for level in LEVELS:
        ax.axhline(-math.log10(level), color="#c0392b", lw=0.6, ls=":")
    ax.set_xlabel("expected -log10 p (uniform)")
    ax.set_ylabel("observed -log10 p")
    ax.set_title(f"{len(neg)} independent pairs: p-values against the uniform", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def check(rows: list[dict]) -> list[str]:
    bad = []
    for r in rows:
        name = f"{r['family']}: {Path(r['a']).stem} -> {Path(r['b']).stem}"
        if r["relation"] == "unrelated" and r["verdict"] == "related":
            bad.append(f"{name} called related (p = {r['p_value']:.2g})")
        if r["kind"] == "convex" and r["verdict"] != "undetermined":
            bad.append(f"{name} (convex) called {r['verdict']}")
        if r["relation"] == "related" and r["verdict"] != "related":
            bad.append(f"{name} ({r['kind']}) called {r['verdict']}")
    bad += [f"{' '.join(d['pair'])}: the verdict moves with the seed {d['verdicts']}"
            for d in stability(rows)["differing"]]
    return bad


def _pairs(args) -> list[dict]:
    """The pairs to test: built in ``args.out`` (and listed in its pairs.json), or, with
    ``--reuse``, read from that list."""
    listed = args.out / "pairs.json"
    if args.reuse:
        return results.read_json(listed)["pairs"]
    pairs = independent_pairs(args.out, args.reduced) + derived_pairs(args.out, args.reduced)
    if args.zoo:
        pairs += zoo_pairs(args.zoo)
    results.write_json(listed, {"pairs": pairs}, newline=True)
    return pairs


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path, nargs="?", help="where the models are built")
    cli.add_from(ap, help="summarise the rows of an earlier --json instead of running")
    ap.add_argument("--zoo", type=Path, help="a zoo built by benchmarks/zoo.py, tested too")
    cli.add_json(ap)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="determine's seeds, each pair run at every one (default 0)")
    ap.add_argument("--reduced", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="test the pairs an earlier run built in OUT_DIR (its pairs.json)")
    cli.add_check(ap)
    cli.add_markdown(ap, help="print the tables of RESULTS.md")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.source:
        rows = results.read_json(args.source)["rows"]
    elif args.out is None:
        ap.error("give OUT_DIR (where the models are built) or --from OUT.json")
    else:
        rows = run(_pairs(args), tuple(args.seeds))
    summary = summarise(rows)
    summary["seconds"] = time.perf_counter() - t0
    print(markdown(summary) if args.markdown else results.dumps(summary))
    if args.json:
        results.write_json(args.json, {"summary": summary, "rows": rows}, newline=True)
    if args.png:
        qq_plot(first_seed(rows), args.png)
    if args.check:
        bad = check(rows)
        if bad:
            print("calibration check failed:\n  " + "\n  ".join(bad), file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
