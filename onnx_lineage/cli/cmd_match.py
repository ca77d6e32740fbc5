"""``onnx-lineage match A B``."""

from __future__ import annotations

from onnx_lineage.cli.options import JsonOpt, ModelArg

NAME = "match"


def command(model_a: ModelArg, model_b: ModelArg, json: JsonOpt = False) -> None:
    """Layer correspondence of A and B: transforms applied (transpose, dequantize, BatchNorm fold,
    permutation, scale), cosine similarity after alignment, coverage."""
    from onnx_lineage.cli import render
    from onnx_lineage.matching import match

    r = match(model_a, model_b)
    if json:
        render.emit_json(r)
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
