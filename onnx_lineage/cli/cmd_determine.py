"""``onnx-lineage determine A B``."""

from __future__ import annotations

from typing import Annotated

import typer

from onnx_lineage.cli.options import (DataOpt, Device, DeviceOpt, JsonOpt, ModelArg, OutputKind,
                                      OutputOpt, SeedOpt)

NAME = "determine"

PointsOpt = Annotated[int, typer.Option("--alphas", min=3, max=1001,
                                        help="Points on the interpolation grid.")]
RowsOpt = Annotated[int, typer.Option("--rows", min=1, help="Data rows used for the loss.")]


def command(model_a: ModelArg, model_b: ModelArg, data: DataOpt = None, seed: SeedOpt = 0,
            device: DeviceOpt = Device.auto, output: OutputOpt = OutputKind.auto,
            alphas: PointsOpt = 11, rows: RowsOpt = 1000, json: JsonOpt = False) -> None:
    """Is B derived from A? White-box verdict from the loss barrier along the aligned
    interpolation path, with the threshold, the weight evidence and its p-value."""
    from onnx_lineage.analyses.determination import determine
    from onnx_lineage.cli import render
    from onnx_lineage.data import load_data

    ds = load_data(data) if data is not None else None
    r = determine(model_a, model_b, ds, seed=seed, device=device.value, points=alphas, rows=rows,
                  output=output.value)
    if json:
        render.emit_json(r)
        return
    render_determination(r)


def render_determination(r) -> None:
    """Table of a DeterminationResult."""
    from onnx_lineage.cli import render
    c = render.console()
    c.print(render.kv_table(f"{r.model_a} -> {r.model_b}: {r.verdict.upper()}", [
        ("reason", r.reason),
        ("barrier", f"{render.fmt(r.barrier)} (threshold {r.threshold}, margin "
                    f"{render.fmt(r.margin)})"),
        ("barrier before alignment", render.fmt(r.barrier_unaligned)),
        ("error barrier", render.fmt(r.error_barrier)),
        ("unit similarity", f"{render.fmt(r.similarity)} (threshold {r.similarity_threshold}; "
                            f"shuffled surrogates {render.fmt(r.null_similarity)}, "
                            f"p = {render.fmt(r.p_value, 6)})"),
        ("coverage", f"A {r.coverage['a']:.1%}, B {r.coverage['b']:.1%}"),
        ("criterion", r.criterion),
        ("provider", r.provider),
    ]))
    if r.curve:
        c.print(render.table("loss along the path", ["alpha", "loss", "error"],
                             [[c_["alpha"], c_["loss"], c_["error"]] for c_ in r.curve]))
    for line in r.transforms + r.notes:
        c.print(f"- {line}")
