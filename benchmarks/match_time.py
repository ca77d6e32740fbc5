"""Time of ``match`` on every pair of the lineage zoo, for one or more checkouts, in turns.

    python benchmarks/zoo.py /tmp/zoo
    python benchmarks/match_time.py /tmp/zoo --root /path/to/old/checkout --root . --rounds 3

Each ``--root`` is a checkout of onnx-lineage; every round runs one fresh process per checkout,
in turn (so the machine's drift falls on all of them alike), that matches every zoo pair with
that checkout's code after one warm-up pair and reports the total seconds. The summary gives each
checkout's median total over the rounds and its ratio to the first checkout's, measured in the
same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import cli, results  # not harness.checkout_first(): each child imports its own checkout

HERE = Path(__file__).resolve()


def one_checkout(zoo: Path) -> float:
    """Seconds to match every pair of ``zoo`` (the checkout on ``sys.path``), after a warm-up."""
    from onnx_lineage.matching import match
    from onnx_lineage.model.loading import load_model
    pairs = results.read_json(zoo / "zoo.json")["pairs"]
    models = {}

    def loaded(name):
        if name not in models:
            models[name] = load_model(zoo / f"{name}.onnx")
        return models[name]

    match(loaded(pairs[0]["a"]), loaded(pairs[0]["b"]))  # numba and imports warm
    t0 = time.perf_counter()
    for p in pairs:
        match(loaded(p["a"]), loaded(p["b"]))
    return time.perf_counter() - t0


def main() -> None:
    ap = cli.parser(__doc__, paragraph=True)
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--root", action="append", type=Path, default=[],
                    help="a checkout to time (give several; the first is the reference)")
    ap.add_argument("--rounds", type=int, default=3)
    cli.add_json(ap)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(one_checkout(args.zoo))
        return
    roots = [r.resolve() for r in args.root] or [HERE.parents[1]]
    times: dict[str, list] = {str(r): [] for r in roots}
    for k in range(args.rounds):
        for root in roots:
            out = subprocess.run([sys.executable, str(HERE), str(args.zoo), "--child"],
                                 capture_output=True, text=True, check=True,
                                 env=dict(os.environ, PYTHONPATH=str(root)))
            times[str(root)].append(float(out.stdout.strip().splitlines()[-1]))
            print(f"round {k + 1}: {root}: {times[str(root)][-1]:.2f} s", flush=True)
    ref = statistics.median(times[str(roots[0])])
    summary = {r: {"seconds": t, "median": statistics.median(t),
                   "ratio_to_first": statistics.median(t) / ref} for r, t in times.items()}
    print(results.dumps(summary))
    if args.json:
        results.write_json(args.json, summary)


if __name__ == "__main__":
    main()
