"""The lineage forest over the benchmark zoo (109 models): screening, recall, local vs Ray.

    python benchmarks/tree_bench.py ZOO_DIR [--json OUT.json] [--no-ray]

Reports: exact tests run against all n(n-1)/2 pairs; candidate recall (the zoo's related pairs
that survive screening); how many derived members get their true parent as forest parent or
ancestor; whether every independent model is a root; wall time on this process and on a local Ray
cluster started by the script (same machine: the point is the same result, not a speed-up on 2
cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import harness

harness.checkout_first()
from harness import cli, results  # noqa: E402
from onnx_lineage.data import Dataset, digits  # noqa: E402
from onnx_lineage.zoo import tree  # noqa: E402


def zoo_data() -> Dataset:
    """Digits as pixels (``x``) and as tokens (``input_ids``, ``attention_mask``), one file for all."""
    d = digits()
    ids = np.rint(d.arrays["x"] * 16).astype(np.int64)
    return Dataset({"x": d.arrays["x"], "input_ids": ids, "attention_mask": np.ones_like(ids)}, d.y)


def evaluate(zoo: Path, r) -> dict:
    spec = results.read_json(zoo / "zoo.json")
    parent_of = {e["child"]: e["parent"] for e in r.edges}

    def ancestors(m):
        out = []
        while m in parent_of:
            m = parent_of[m]
            out.append(m)
        return out

    related = [p for p in spec["pairs"] if p["relation"] == "related" and p["split"] == "evaluation"]
    from_parent = [p for p in related if p["a"].endswith("/parent")]
    unrelated = [p for p in spec["pairs"] if p["relation"] == "unrelated"]
    def name(p):  # the zoo's stems collide across families: tree names them family/member
        return p

    # function-identical copies of a parent (re-exports, BatchNorm kept, permuted and rescaled):
    # no data-free method can tell them from the parent, so either counts as the parent
    copies = {"obfuscated", "dynamo", "bn_kept"}

    def is_parent_or_copy(candidate, parent):
        fam = parent.split("/")[0]
        return candidate == parent or (candidate.startswith(fam + "/")
                                       and candidate.split("/")[1] in copies)

    same_tree = sum(1 for p in related if _root(name(p["a"]), parent_of) == _root(name(p["b"]), parent_of))
    direct = sum(1 for p in from_parent if parent_of.get(name(p["b"])) == name(p["a"]))
    ancestor = sum(1 for p in from_parent if name(p["a"]) in ancestors(name(p["b"])))
    ancestor_or_copy = sum(1 for p in from_parent
                           if any(is_parent_or_copy(x, name(p["a"])) for x in ancestors(name(p["b"]))))
    indep_roots = sorted({name(p["b"]) for p in unrelated if p["split"] == "evaluation"})
    return {"related_pairs_same_tree": same_tree / len(related),
            "members_with_true_parent": direct / len(from_parent),
            "members_with_true_parent_as_ancestor": ancestor / len(from_parent),
            "members_with_parent_or_its_copy_as_ancestor": ancestor_or_copy / len(from_parent),
            "independent_models_that_are_roots": float(np.mean([m in r.roots for m in indep_roots])),
            "unrelated_pairs_in_one_tree": sum(
                1 for p in unrelated
                if _root(name(p["a"]), parent_of) == _root(name(p["b"]), parent_of)) / len(unrelated),
            # the zoo holds no merge: every one claimed is read from the weights' algebra alone
            "merges_claimed": [{"child": m["child"], "recipe": m["recipe"], "base": m["base"],
                                "parents": [x["parent"] for x in m["parents"]]}
                               for m in r.merges or []]}


def _root(m, parent_of):
    while m in parent_of:
        m = parent_of[m]
    return m


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("zoo", type=Path)
    cli.add_json(ap)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    data = zoo_data()
    out = {}
    t0 = time.perf_counter()
    local = tree([args.zoo], data, device="cpu")
    out["local"] = {"seconds": time.perf_counter() - t0, "models": len(local.models),
                    "all_pairs": local.all_pairs, "candidates": local.candidates,
                    "exact_tests": local.exact_tests, "related_pairs": local.related_pairs,
                    "failed": len(local.failed), **evaluate(args.zoo, local),
                    "roots": local.roots, "edges": local.edges}
    print(results.dumps({k: v for k, v in out["local"].items() if k != "edges"}),
          file=sys.stderr)
    if not args.no_ray:
        import ray
        ray.init(include_dashboard=False, log_to_driver=False)
        try:
            t0 = time.perf_counter()
            remote = tree([args.zoo], data, device="cpu", ray="auto")
            out["ray"] = {"seconds": time.perf_counter() - t0,
                          "same_edges_as_local": remote.edges == local.edges,
                          "same_roots_as_local": remote.roots == local.roots}
        finally:
            ray.shutdown()
    print(results.dumps(out))
    if args.json:
        results.write_json(args.json, out)


if __name__ == "__main__":
    main()
