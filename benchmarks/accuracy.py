"""Accuracy of determination and closeness on the benchmark zoo, beside baselines.

    python benchmarks/accuracy.py ZOO_DIR [--json OUT.json] [--check] [--markdown]
    python benchmarks/accuracy.py ZOO_DIR --from OUT.json --markdown   # tables of a past run

For every pair of ``ZOO_DIR/zoo.json``: the verdict of ``determine`` and the ``closeness`` score,
and, computed in the same run, the baselines: prediction agreement on the data, a ModelDiff-style
decision-distance-vector cosine, plain weight cosine over tensors matched by name, and boundary
closeness without the sampling strategy (uniform points, random directions only).

``--check`` exits 1 unless every evaluation pair gets the expected verdict and closeness falls
strictly along every fine-tuning, pruning and noise ladder (the accuracy regression check CI runs
on the reduced zoo). Chains of generations are reported but not checked: five more epochs of
fine-tuning per generation move a model by less than the closeness interval.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import harness

harness.checkout_first()
from harness import cli, results  # noqa: E402
from onnx_lineage.analyses.closeness import closeness  # noqa: E402
from onnx_lineage.analyses.determination import determine  # noqa: E402
from onnx_lineage.data import Dataset, digits, feeds_for  # noqa: E402
from onnx_lineage.model.loading import load_model  # noqa: E402
from onnx_lineage.model.runner import Runner  # noqa: E402


def zoo_data(family: str) -> Dataset:
    d = digits()
    if family == "enc":
        ids = np.rint(d.arrays["x"] * 16).astype(np.int64)
        return Dataset({"input_ids": ids, "attention_mask": np.ones_like(ids)}, d.y, "digits-tokens")
    return d


def predictions(path, data):
    r = Runner(load_model(path).proto, device="cpu")
    feeds, _ = feeds_for(r.inputs, data)
    return r.predict(feeds)


def ddv_cosine(pa, pb, data, path_a, path_b, seed=0, n=200) -> float:
    """ModelDiff-style: cosine of the two models' decision-distance vectors on input pairs."""
    rng = np.random.default_rng(seed)
    key = next(iter(data.arrays))
    x = data.arrays[key]
    idx = rng.choice(len(x), n, replace=False)
    if x.dtype.kind in "iu":
        other = x[rng.choice(len(x), n)]
        mask = rng.random(x[idx].shape) < 0.1
        x2 = np.where(mask, other, x[idx])
    else:
        x2 = np.clip(x[idx] + rng.normal(0, 0.1, x[idx].shape).astype(np.float32), 0, 1)
    comp = {k: v[idx] for k, v in data.arrays.items() if k != key}

    def ddv(path):
        p1 = predictions(path, Dataset({key: x[idx], **comp}))
        p2 = predictions(path, Dataset({key: x2, **comp}))
        s1, s2 = _probs(p1), _probs(p2)
        return 1 - (s1 * s2).sum(1) / (np.linalg.norm(s1, axis=1) * np.linalg.norm(s2, axis=1) + 1e-12)

    va, vb = ddv(path_a), ddv(path_b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-12))


def _probs(p):
    s = p.scores
    if s.min() >= 0 and np.allclose(s.sum(1), 1, atol=1e-3):
        return s
    z = np.exp(s - s.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def named_weight_cosine(path_a, path_b) -> float | None:
    """Cosine over initializers with the same name and shape (the naive baseline)."""
    from onnx_lineage.model.weights import tensor_array
    ia = {t.name: tensor_array(t) for t in load_model(path_a).proto.graph.initializer}
    ib = {t.name: tensor_array(t) for t in load_model(path_b).proto.graph.initializer}
    common = [k for k in ia if k in ib and ia[k].shape == ib[k].shape and ia[k].dtype.kind == "f"
              and ia[k].size > 1]
    if not common:
        return None
    a = np.concatenate([ia[k].ravel() for k in common]).astype(np.float64)
    b = np.concatenate([ib[k].ravel() for k in common]).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def roc_auc(scores, labels) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if not pos.size or not neg.size:
        return float("nan")
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum())
                 / (pos.size * neg.size))


def evaluate(zoo: Path, points: int = 128) -> list[dict]:
    spec = results.read_json(zoo / "zoo.json")
    rows = []
    for pair in spec["pairs"]:
        fam = pair["a"].split("/")[0]
        data = zoo_data(fam)
        pa, pb = zoo / f"{pair['a']}.onnx", zoo / f"{pair['b']}.onnx"
        t0 = time.perf_counter()
        det = determine(pa, pb, data, device="cpu")
        t_det = time.perf_counter() - t0
        t0 = time.perf_counter()
        # a new head scores other labels than its parent: compared on the labels both have
        clo = closeness(pa, pb, data, device="cpu", points=points, label_space="shared")
        t_clo = time.perf_counter() - t0
        base_clo = closeness(pa, pb, data, device="cpu", points=points, sampling="uniform",
                             directions=("random",), label_space="shared")
        pred_a, pred_b = predictions(pa, data), predictions(pb, data)
        rows.append(dict(pair, verdict=det.verdict, barrier=det.barrier,
                         barrier_unaligned=det.barrier_unaligned, similarity=det.similarity,
                         p_value=det.p_value, coverage=det.coverage, closeness=clo.closeness,
                         ci95=clo.ci95, matching_rate=clo.matching_rate,
                         queries=clo.queries, seconds_determine=t_det, seconds_closeness=t_clo,
                         baseline_agreement=float(np.mean(pred_a.labels == pred_b.labels)),
                         baseline_ddv=ddv_cosine(pred_a, pred_b, data, pa, pb),
                         baseline_named_cosine=named_weight_cosine(pa, pb),
                         baseline_uniform_closeness=base_clo.closeness))
        r = rows[-1]
        print(f"{pair['a']:>14s} -> {pair['b']:<26s} {pair['relation']:9s} {r['verdict']:12s} "
              f"bar={r['barrier'] if r['barrier'] is None else round(r['barrier'], 4)!s:8s} "
              f"sim={r['similarity'] if r['similarity'] is None else round(r['similarity'], 3)!s:6s} "
              f"clo={r['closeness']:.3f}", file=sys.stderr)
    return rows


def summarise(rows: list[dict]) -> dict:
    from scipy.stats import spearmanr
    ev = [r for r in rows if r["split"] == "evaluation"]
    truth = [r["relation"] == "related" for r in ev]
    correct = [(r["verdict"] == "related") == t for r, t in zip(ev, truth)]
    sims = [(-1 if r["similarity"] is None else r["similarity"]) for r in ev]
    pos_sim = [s for s, t in zip(sims, truth) if t]
    neg_sim = [s for s, t in zip(sims, truth) if not t]
    summary = {"pairs": len(ev), "accuracy": float(np.mean(correct)),
               "wrong": [f"{r['a']} -> {r['b']}" for r, c in zip(ev, correct) if not c],
               "auc_p_value": roc_auc([-r["p_value"] for r in ev], truth),
               "auc_similarity": roc_auc(sims, truth),
               "auc_barrier": roc_auc([-(r["barrier"] if r["barrier"] is not None else 1) for r in ev],
                                      truth),
               "margin_similarity": min(pos_sim) - max(neg_sim) if pos_sim and neg_sim else None,
               }
    for key in ("baseline_agreement", "baseline_ddv", "baseline_named_cosine",
                "baseline_uniform_closeness", "closeness"):
        vals = [(r[key] if r[key] is not None else 0.0) for r in ev]
        summary[f"auc_{key}"] = roc_auc(vals, truth)
    ladders = {}
    for r in ev:
        if r["ladder"] and r["a"].endswith("/parent"):
            ladders.setdefault(f"{r['a'].split('/')[0]}/{r['ladder']}", []).append(r)
    summary["ladders"] = {}
    for name, rs in sorted(ladders.items()):
        rs.sort(key=lambda r: r["level"])
        c = [r["closeness"] for r in rs]
        u = [r["baseline_uniform_closeness"] for r in rs]
        summary["ladders"][name] = {
            "levels": [r["level"] for r in rs], "closeness": c, "uniform_baseline": u,
            "strictly_falling": all(x > y for x, y in zip(c, c[1:])),
            "spearman": float(spearmanr([r["level"] for r in rs], c)[0]) if len(rs) > 2 else -1.0}
    return summary


def markdown(summary: dict, rows: list[dict]) -> str:
    """The ladder and per-pair tables of benchmarks/RESULTS.md."""
    def f(x, fmt=".3f"):
        return "n/a" if x is None else format(x, fmt)

    out = ["| ladder | levels | closeness (ours) | uniform baseline | strictly falling | Spearman |",
           "|---|---|---|---|---|---|"]
    for name, v in summary["ladders"].items():
        out.append(f"| {name} | {', '.join(map(str, v['levels']))} | "
                   f"{', '.join(f(c) for c in v['closeness'])} | "
                   f"{', '.join(f(c) for c in v['uniform_baseline'])} | "
                   f"{'yes' if v['strictly_falling'] else 'no'} | {v['spearman']:.2f} |")
    out += ["", "| pair | relation | verdict | p-value | barrier | unit sim. | closeness | "
            "agreement | DDV cos | named cos | uniform clo |", "|---|---|---|---|---|---|---|---|"
            "---|---|---|"]
    for r in rows:
        if r["split"] != "evaluation":
            continue
        p = r["p_value"]
        out.append(f"| {r['a']} → {r['b']} | {r['relation']} | {r['verdict']} | "
                   f"{'<1e-300' if p is not None and p <= 1e-300 else f(p, '.1e')} | "
                   f"{f(r['barrier'], '.4f')} | {f(r['similarity'])} | {f(r['closeness'])} | "
                   f"{f(r['baseline_agreement'])} | {f(r['baseline_ddv'])} | "
                   f"{f(r['baseline_named_cosine'])} | {f(r['baseline_uniform_closeness'])} |")
    return "\n".join(out)


#: Ladders along which closeness must fall strictly (``--check``).
CHECKED_LADDERS = ("finetune", "prune", "noise")


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("zoo", type=Path)
    cli.add_json(ap)
    ap.add_argument("--points", type=int, default=128)
    cli.add_check(ap)
    cli.add_markdown(ap, help="print the tables of RESULTS.md")
    cli.add_from(ap, help="summarise the rows of an earlier --json instead of running")
    args = ap.parse_args()
    rows = (results.read_json(args.source)["rows"] if args.source
            else evaluate(args.zoo, args.points))
    summary = summarise(rows)
    print(markdown(summary, rows) if args.markdown else results.dumps(summary))
    if args.json:
        results.write_json(args.json, {"summary": summary, "rows": rows})
    if args.check:
        bad = summary["wrong"] + [k for k, v in summary["ladders"].items()
                                  if k.split("/")[1] in CHECKED_LADDERS and not v["strictly_falling"]]
        if bad:
            print(f"accuracy check failed: {bad}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
