"""``onnx-lineage match A B``."""

from __future__ import annotations

from onnx_lineage.cli.options import (AlphaOpt, JsonOpt, MaxMemoryOpt, ModelArg, QuietOpt,
                                      SeedOpt, use_memory)

NAME = "match"


def command(model_a: ModelArg, model_b: ModelArg, alpha: AlphaOpt = 0.01, seed: SeedOpt = 0,
            json: JsonOpt = False, quiet: QuietOpt = False,
            max_memory: MaxMemoryOpt = None) -> None:
    """Layer correspondence of A and B: transforms applied (transpose, dequantize, BatchNorm fold,
    permutation, scale), cosine similarity after alignment, coverage; and per class of hidden
    units, the data-free independence tests (unit order, aligned weights)."""
    use_memory(max_memory)
    import time

    import numpy as np

    from onnx_lineage.cli import render
    from onnx_lineage.cli.progress import steps
    from onnx_lineage.evidence import data_free
    from onnx_lineage.matching import match

    with steps(not (json or quiet)) as step:
        t0 = time.perf_counter()
        r = match(model_a, model_b, progress=step, rng=np.random.default_rng(seed))
        t1 = time.perf_counter()
        step("independence tests without data (unit order, aligned weights, same values)")
        ev = data_free(r, alpha)
        timings = {"match": t1 - t0, "tests": time.perf_counter() - t1}
    if json:
        render.emit_json(r, tests=ev.tests, alpha=alpha, timings=timings)
        return
    c = render.console()
    c.print(render.table(f"{r.model_a} <-> {r.model_b}",
                         ["A", "B", "kind", "shape", "transforms", "cosine"],
                         [[str(p["a"]), str(p["b"]), p["kind"], "x".join(map(str, p["shape"])),
                           ", ".join(p["transforms"]) or "-", p["cosine"]] for p in r.pairs]))
    c.print(render.kv_table("coverage", [
        ("A", f"{r.coverage['a']:.1%} of parameters"), ("B", f"{r.coverage['b']:.1%} of parameters"),
        ("unmatched", f"A {r.unmatched['a'] or '-'}, B {r.unmatched['b'] or '-'}"),
    ]))
    for line in r.transforms + r.limits:
        c.print(f"- {line}")
    c.print(r.statement)
    c.print(render.tests_table(ev.tests, alpha))
    per_class = render.classes_table(ev.tests)
    if per_class is not None:
        c.print(per_class)
