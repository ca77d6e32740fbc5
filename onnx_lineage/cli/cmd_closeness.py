"""``onnx-lineage closeness A B``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnx_lineage.cli.options import (DataOpt, Device, DeviceOpt, JsonOpt, MaxMemoryOpt, ModelArg,
                                      OutputKind, OutputOpt, QuietOpt, SeedOpt, SharedLabelsOpt,
                                      use_memory)

NAME = "closeness"

PointsOpt = Annotated[int, typer.Option("--points", min=1, help="Most data points to measure.")]
BudgetOpt = Annotated[Optional[int], typer.Option("--budget", min=1,
                                                  help="Most queries (forward rows) per model.")]
TolOpt = Annotated[float, typer.Option("--tolerance", min=1e-4, max=0.5,
                                       help="Stop when the 95% interval half-width is below this.")]
RaysOpt = Annotated[int, typer.Option("--rays", min=1, max=256, help="Rays per point.")]
BoundsOpt = Annotated[Optional[str], typer.Option("--bounds", help="Valid input range LO,HI "
                                                  "(default: the data's range per feature).")]


def command(model_a: ModelArg, model_b: ModelArg, data: DataOpt = None, seed: SeedOpt = 0,
            device: DeviceOpt = Device.auto, output: OutputOpt = OutputKind.auto,
            points: PointsOpt = 256, budget: BudgetOpt = None, tolerance: TolOpt = 0.02,
            rays: RaysOpt = 6, bounds: BoundsOpt = None, shared_labels: SharedLabelsOpt = False,
            json: JsonOpt = False, quiet: QuietOpt = False,
            max_memory: MaxMemoryOpt = None) -> None:
    """How far has B moved from A? Black-box closeness from decision-boundary distances and the
    prediction matching rate, with a 95% interval and the queries spent."""
    use_memory(max_memory)
    from onnx_lineage.analyses.closeness import closeness
    from onnx_lineage.cli import render
    from onnx_lineage.cli.progress import steps
    from onnx_lineage.data import load_data

    ds = load_data(data) if data is not None else None
    with steps(not (json or quiet)) as step:
        r = closeness(model_a, model_b, ds, seed=seed, device=device.value, points=points,
                      budget=budget, tolerance=tolerance, rays_per_point=rays,
                      bounds=parse_bounds(bounds), output=output.value,
                      label_space="shared" if shared_labels else "same", progress=step)
    if json:
        render.emit_json(r)
        return
    render_closeness(r)


def parse_bounds(text: str | None) -> tuple[float, float] | None:
    """``"0,1"`` -> (0.0, 1.0); a usage error otherwise."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter("expected LO,HI, e.g. 0,1", param_hint="--bounds") from None
    if not lo < hi:
        raise typer.BadParameter("LO must be below HI", param_hint="--bounds")
    return lo, hi


def _compared(classes: dict) -> str:
    """``"; 2 labels compared (A scores 10, B 2)"`` where the label spaces differ, else ``""``."""
    if not classes or classes.get("a") == classes.get("b"):
        return ""
    return f"; {classes['compared']} labels compared (A scores {classes['a']}, B {classes['b']})"


def render_closeness(r) -> None:
    """Table of a ClosenessResult."""
    from onnx_lineage.cli import render
    c = render.console()
    c.print(render.kv_table(f"{r.model_a} -> {r.model_b}: closeness {r.closeness:.4f}", [
        ("95% interval", f"[{r.ci95[0]:.4f}, {r.ci95[1]:.4f}]"),
        ("matching rate", render.fmt(r.matching_rate)),
        ("distance similarity", render.fmt(r.distance_similarity)),
        ("mean boundary distance", f"A {render.fmt(r.mean_distance['a'])}, "
                                   f"B {render.fmt(r.mean_distance['b'])}"),
        ("points / rays", f"{r.points} / {r.rays} ({r.rounds} round{'s' if r.rounds != 1 else ''})"),
        ("queries", f"A {r.queries['a']:,}, B {r.queries['b']:,}"),
        ("directions", ", ".join(r.directions)),
        ("labels", r.labels + _compared(r.classes)),
        ("provider", f"A {r.provider['a']}, B {r.provider['b']}"),
    ]))
    for line in r.notes:
        c.print(f"- {line}")
