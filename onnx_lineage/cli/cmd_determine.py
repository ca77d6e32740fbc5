"""``onnx-lineage determine A B``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnx_lineage.cli.options import (AlphaOpt, AlsoOpt, DataOpt, Device, DeviceOpt, JsonOpt,
                                      MaxMemoryOpt, ModelArg, OutputKind, OutputOpt, QuietOpt,
                                      SeedOpt, use_memory)

NAME = "determine"

GridOpt = Annotated[Optional[int], typer.Option(
    "--grid", min=3, max=1001, show_default=False,
    help="Points on the interpolation grid from A to B, default 11 (two more are added around "
         "the largest excess).")]
#: the former name of --grid, still read
OldGridOpt = Annotated[Optional[int], typer.Option("--alphas", min=3, max=1001, hidden=True)]
RowsOpt = Annotated[int, typer.Option("--rows", min=1, help="Data rows used for the loss.")]
CopiesOpt = Annotated[Optional[int], typer.Option(
    "--copies", min=0, show_default=False,
    help="Most permuted copies the basin test draws, each a forward pass (default 30 over its "
         "level; it stops once its sequential boundaries decide). Fewer bound its time on large "
         "models; undecided at the most, its p-value is the upper end of its interval. 0 skips "
         "the basin test and the sweep.")]


def command(model_a: ModelArg, model_b: ModelArg, data: DataOpt = None, seed: SeedOpt = 0,
            device: DeviceOpt = Device.auto, output: OutputOpt = OutputKind.auto,
            grid: GridOpt = None, rows: RowsOpt = 1000, alpha: AlphaOpt = 0.01,
            json: JsonOpt = False, quiet: QuietOpt = False,
            max_memory: MaxMemoryOpt = None, alphas: OldGridOpt = None,
            also: AlsoOpt = None, copies: CopiesOpt = None) -> None:
    """Is B derived from A? Independence tests with stated nulls (unit order, aligned weights,
    loss basin), their p-values per layer, and the loss along the interpolation path."""
    use_memory(max_memory)
    if grid is not None and alphas is not None and grid != alphas:
        raise typer.BadParameter("--alphas is the former name of --grid: give one of them",
                                 param_hint="--grid")
    grid = grid or alphas or 11
    from onnx_lineage.analyses.determination import determine
    from onnx_lineage.cli import render
    from onnx_lineage.cli.progress import steps
    from onnx_lineage.data import load_data

    ds = load_data(data) if data is not None else None
    with steps(not (json or quiet)) as step:
        r = determine(model_a, model_b, ds, seed=seed, device=device.value, points=grid,
                      rows=rows, output=output.value, alpha=alpha, progress=step,
                      also=also or (), copies=copies)
    if json:
        render.emit_json(r)
        return
    render_determination(r)


def render_determination(r) -> None:
    """Tables of a DeterminationResult."""
    from onnx_lineage.cli import render
    c = render.console()
    c.print(render.kv_table(f"{r.model_a} -> {r.model_b}: {r.verdict.upper()}", [
        ("reason", r.reason),
        ("p-value", f"{render.pval(r.p_value)} (alpha {r.alpha:g}; the tests combined by "
                    "weighted Bonferroni)"),
        ("shared layers", ", ".join(map(str, r.shared_layers)) or "-"),
        ("B - A", r.difference["statement"] if r.difference else "-"),
        *([("between", r.between["statement"])] if r.between else []),
        ("barrier", f"{render.fmt(r.barrier)} aligned, {render.fmt(r.barrier_unaligned)} before "
                    "alignment (descriptive: alignment connects independent models too)"),
        ("error barrier", render.fmt(r.error_barrier)),
        ("coverage", f"A {r.coverage['a']:.1%}, B {r.coverage['b']:.1%}; the sweep moved "
                     f"{r.interpolated_fraction:.0%} of the matched parameters"),
        ("criterion", r.criterion),
        ("provider", r.provider),
    ]))
    c.print(render.tests_table(r.tests, r.alpha))
    per_class = render.classes_table(r.tests)
    if per_class is not None:
        c.print(per_class)
    if r.curve:
        c.print(render.table("loss along the path", ["t (A to B)", "loss", "error"],
                             [[c_["alpha"], c_["loss"], c_["error"]] for c_ in r.curve]))
    for line in r.transforms + r.notes:
        c.print(f"- {line}")
