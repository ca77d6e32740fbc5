"""Measure the aligned test's null on independent pairs and write its model.

    python benchmarks/fit_null.py [--models DIR] [--out onnx_lineage/evidence/aligned_null.json]

Trains seeds 1000-1005 of the fit families (benchmarks/families.py), matches every pair of
independent models of one family (15 per family) class by class, and fits the null of the
aligned statistic (onnx_lineage/evidence/aligned.py): ``logit(s)`` against the log of the fan-in
and of the width, by least squares over the mean of each group (one class of one family; every
group counts once). The model is then made conservative: shifted up by the largest group-mean
residual (the group that sat highest above the line sits on it) and given the largest spread
seen within any group. Fan-ins beyond the largest measured one are evaluated at it (the fitted
slope is negative: extrapolating would lower the null); wider layers than measured extrapolate
upwards (a higher null: conservative). The calibration benchmark (benchmarks/calibration.py)
measures the error rate on other seeds and on families that were left out of this fit
(``HELD_OUT``).
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import harness

harness.checkout_first()
import families  # noqa: E402
from harness import ROOT, cli, results  # noqa: E402

from onnx_lineage.matching.classes import match_classes, symmetry_classes  # noqa: E402
from onnx_lineage.matching import match  # noqa: E402

FIT_FAMILIES = ("mnist_wide", "iris_mlp", "cancer_mlp", "digits_mlp", "digits_cnn", "encoder",
                "skl_mlp")
HELD_OUT = tuple(f for f in families.FAMILIES if f not in FIT_FAMILIES)
FIT_SEEDS = tuple(range(1000, 1006))
MIN_SPREAD = 0.1


def class_samples(paths: list[Path], family: str) -> list[dict]:
    """Per class of every pair of ``paths``: family, class, width, fan-in, similarity."""
    rows = []
    for pa, pb in itertools.combinations(paths, 2):
        m = match(pa, pb)
        corr = m.correspondence
        for c in match_classes(symmetry_classes(m), corr.a_params, corr.b_own,
                               np.random.default_rng(0)):
            rows.append({"family": family, "class": c.cls.name, "width": c.cls.width,
                         "fan_in": c.fan_in, "similarity": c.similarity,
                         "pair": [pa.stem, pb.stem]})
    return rows


def logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, -1 + 1e-4, 1 - 1e-4)
    return np.log(s / (1 - s))


def fit(rows: list[dict]) -> dict:
    groups = defaultdict(list)
    for r in rows:
        groups[(r["family"], r["class"], r["fan_in"], r["width"])].append(r["similarity"])
    keys = sorted(groups)
    y = np.array([logit(np.array(groups[k])).mean() for k in keys])
    x = np.array([[1.0, np.log(k[2]), np.log(k[3])] for k in keys])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    spreads = [float(logit(np.array(groups[k])).std(ddof=1)) for k in keys if len(groups[k]) > 2]
    worst = keys[int(np.argmax(resid))]
    widest = keys[int(np.argmax([logit(np.array(groups[k])).std(ddof=1) if len(groups[k]) > 2
                                 else 0 for k in keys]))]
    n_pairs = len({tuple(r["pair"]) for r in rows})
    fams = sorted({r["family"] for r in rows})
    return {"b0": float(beta[0]), "b_fan_in": float(beta[1]), "b_width": float(beta[2]),
            "shift": float(resid.max()), "spread": max(max(spreads), MIN_SPREAD),
            "fan_in_max": int(max(k[2] for k in keys)),
            "source": f"{len(rows)} classes of {n_pairs} independent pairs from {len(fams)} "
                      f"families ({', '.join(fams)})",
            "highest_group": " / ".join(map(str, worst)),
            "widest_group": " / ".join(map(str, widest)),
            "groups": [{"family": k[0], "class": k[1], "fan_in": k[2], "width": k[3],
                        "n": len(groups[k]), "mean_similarity": float(np.mean(groups[k])),
                        "max_similarity": float(np.max(groups[k])),
                        "residual": float(r)} for k, r in zip(keys, resid)]}


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("--models", type=Path, default=Path(tempfile.mkdtemp(prefix="lineage-null-")))
    ap.add_argument("--out", type=Path,
                    default=ROOT / "onnx_lineage" / "evidence" / "aligned_null.json")
    args = ap.parse_args()
    rows = []
    for fam in FIT_FAMILIES:
        t0 = time.perf_counter()
        paths = [families.build(fam, s, args.models / fam) for s in FIT_SEEDS]
        rows += class_samples(paths, fam)
        print(f"{fam}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    model = fit(rows)
    results.write_json(args.out, model, newline=True)
    print(results.dumps({k: v for k, v in model.items() if k != "groups"}))


if __name__ == "__main__":
    main()
