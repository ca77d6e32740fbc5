"""Calibrate the determination thresholds on independent pairs only.

    python benchmarks/calibrate.py ACCURACY.json

Reads the rows written by ``benchmarks/accuracy.py --json`` and uses only the pairs of the
``calibration`` split: models of the same architecture and data trained from fresh seeds, never
used in the evaluation. The rules are fixed in advance, not fitted to the derived models:

* similarity threshold: halfway between the largest aligned unit similarity that an independent
  pair reached and 1 (a derived model must share more than any independent pair does, with room);
* barrier threshold: half the smallest aligned barrier that an independent pair showed.

Prints the thresholds and the pairs they come from; the values are copied into
``onnx_lineage/analyses/determination.py`` (``CALIBRATION``) with this evidence in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def calibrate(rows: list[dict]) -> dict:
    cal = [r for r in rows if r["split"] == "calibration"]
    if not cal:
        raise SystemExit("no calibration pairs in the file")
    sims = [r["similarity"] for r in cal if r["similarity"] is not None]
    bars = [r["barrier"] for r in cal if r["barrier"] is not None]
    s_max, b_min = max(sims), min(bars)
    return {"similarity": round(s_max + (1 - s_max) / 2, 3), "barrier": round(b_min / 2, 4),
            "independent_similarity_max": s_max, "independent_barrier_min": b_min,
            "pairs": [(r["a"], r["b"], r["similarity"], r["barrier"]) for r in cal]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("accuracy_json", type=Path)
    args = ap.parse_args()
    rows = json.loads(args.accuracy_json.read_text())["rows"]
    print(json.dumps(calibrate(rows), indent=1))


if __name__ == "__main__":
    main()
