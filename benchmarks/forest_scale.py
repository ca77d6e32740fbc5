"""``tree`` at a thousand models: screening recall, exact tests, time and memory, local and Ray.

    python benchmarks/forest_scale.py /tmp/scale --seeds 1 2 3 4 5 6 7 8 9 10 11 12 13 14 \
        --json benchmarks/results/forest_scale.json

Builds the forests of ``benchmarks/forests.py`` for every seed given (72 models per seed: an MLP,
a CNN and a token encoder family, each with star, chain, mixed and ladder forests and two
independent models; 14 seeds make 1,008 models), puts them in one folder tree, and runs ``tree``
on all of them at once, in this process and then on a local Ray cluster started here. Reports:
the pairs, the candidates screening keeps and its recall of the truly related pairs (the members
of one forest), the exact tests, the related pairs found, models joined across forests, the
direct-parent accuracy over every derived model, the wall time of each run with the peak
resident memory of this process, and whether Ray gives the same forest.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import harness

harness.checkout_first()
from forests import build, data_file, forest_of, score  # noqa: E402
from harness import cli, results  # noqa: E402
from harness.machine import machine  # noqa: E402
from harness.memory import peak_rss_mb  # noqa: E402

from onnx_lineage.zoo import tree  # noqa: E402

def truly_related(truth: dict) -> set[frozenset]:
    members: dict[str, list] = {}
    for m in truth:
        members.setdefault(forest_of(m), []).append(m)
    return {frozenset((a, b)) for ms in members.values() for i, a in enumerate(ms)
            for b in ms[i + 1:]}


def run_tree(folder: Path, truth: dict, ray: str | None) -> tuple[dict, object]:
    t0 = time.perf_counter()
    r = tree([folder], data_file(), seed=0, with_closeness=False, ray=ray)
    seconds = time.perf_counter() - t0
    related_true = truly_related(truth)
    # recall end to end (kept by screening, then found related by the exact tests): a lower
    # bound on the screening's own recall
    found = {frozenset((p["a"], p["b"])) for p in r.related}
    parent_of = {e["child"]: e["parent"] for e in r.edges}
    s = score(truth, parent_of, r.roots)
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "models": len(r.models),
            "all_pairs": r.all_pairs, "candidates": r.candidates, "exact_tests": r.exact_tests,
            "truly_related_pairs": len(related_true),
            "related_found": len(found & related_true),
            "related_recall": len(found & related_true) / len(related_true),
            "related_outside_forests": len(found - related_true),
            "direct_parent": s["direct_parent"], "adjacent": s["adjacent"],
            "roots_right": s["roots_right"], "forests": s["forests"],
            "joined_across_forests": s["joined_across_forests"]}, r


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 15)))
    cli.add_json(ap)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    truth: dict = {}
    t0 = time.perf_counter()
    for seed in args.seeds:
        part = build(args.out / f"seed{seed}", seed)
        truth.update({f"seed{seed}/{k}": (None if v is None else f"seed{seed}/{v}")
                      for k, v in part.items()})
    built = time.perf_counter() - t0
    print(f"{len(truth)} models built in {built:.0f} s", file=sys.stderr)
    out = {"machine": machine(python=False), "seeds": args.seeds,
           "build_seconds": built}
    out["local"], local = run_tree(args.out, truth, None)
    print(results.dumps(out["local"]), file=sys.stderr)
    if not args.no_ray:
        import ray
        ray.init(include_dashboard=False, log_to_driver=False)
        try:
            out["ray"], remote = run_tree(args.out, truth, "auto")
            out["ray"]["same_edges_as_local"] = remote.edges == local.edges
            out["ray"]["same_roots_as_local"] = remote.roots == local.roots
        finally:
            ray.shutdown()
        print(results.dumps(out["ray"]), file=sys.stderr)
    if args.json:
        results.write_json(args.json, out)


if __name__ == "__main__":
    main()
