"""The residual stream's rotation fit on a pair: its time reading evenly spaced columns (as
``match`` does) against reading all of them, and what it decided each way.

    python benchmarks/rotation_fit.py /tmp/big/decoder_a.onnx /tmp/big/decoder_c.onnx

Runs ``match`` twice in this process, the second time with no column left out
(``rotation.SAMPLED_COLUMNS_PER_UNIT`` set beyond any model), and times each call of
:func:`onnx_lineage.matching.rotation.fit_rotation` (its cross-covariance, SVD and the signed
permutation's assignment), with ``match``'s own wall time beside it.
"""

from __future__ import annotations

import json
import time

import harness

harness.checkout_first()
from harness import cli  # noqa: E402
from harness.machine import machine  # noqa: E402


def fits(a: str, b: str) -> dict:
    """``match(a, b)``'s seconds and each rotation fit's seconds, columns, cosines and decision."""
    import importlib
    from onnx_lineage.matching import match, rotation
    match_module = importlib.import_module("onnx_lineage.matching.match")
    seen = []
    fit = match_module.fit_rotation

    def timed(*args):
        t0 = time.perf_counter()
        r = fit(*args)
        seen.append({"seconds": time.perf_counter() - t0, "width": r.width,
                     "columns": r.columns, "fit": r.fit, "permutation": r.permutation,
                     "accepted": r.accepted})
        return r
    match_module.fit_rotation = timed
    try:
        t0 = time.perf_counter()
        match(a, b)
        return {"match_seconds": time.perf_counter() - t0, "fits": seen,
                "sampled_columns_per_unit": rotation.SAMPLED_COLUMNS_PER_UNIT}
    finally:
        match_module.fit_rotation = fit


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("a")
    ap.add_argument("b")
    cli.add_json(ap)
    args = ap.parse_args()
    from onnx_lineage.matching import rotation
    sampled = fits(args.a, args.b)
    every = rotation.SAMPLED_COLUMNS_PER_UNIT
    rotation.SAMPLED_COLUMNS_PER_UNIT = 10**12
    try:
        whole = fits(args.a, args.b)
    finally:
        rotation.SAMPLED_COLUMNS_PER_UNIT = every
    doc = {"machine": machine(), "a": args.a, "b": args.b, "sampled": sampled, "all": whole}
    print(json.dumps(doc, indent=1))
    if args.json:
        from harness import results
        results.write_json(args.json, doc)


if __name__ == "__main__":
    main()
