"""``onnx-lineage demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnx_lineage.cli.options import (Device, DeviceOpt, JsonOpt, MaxMemoryOpt, QuietOpt,
                                      SeedOpt, use_memory)

NAME = "demo"

OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Keep the family's ONNX files here.")]
ReportOpt = Annotated[Path, typer.Option("--report", help="Where to write the example report "
                                         "(.html or .md).")]


def command(out: OutOpt = None, seed: SeedOpt = 0, device: DeviceOpt = Device.auto,
            report: ReportOpt = Path("onnx-lineage-demo-report.html"), json: JsonOpt = False,
            quiet: QuietOpt = False, max_memory: MaxMemoryOpt = None) -> None:
    """Train a small model family on the built-in digits (parent, fine-tuned, pruned, noisy,
    int8, obfuscated, independent), run every analysis of each member against the parent, and
    write an example report."""
    use_memory(max_memory)
    from onnx_lineage.cli import render
    from onnx_lineage.cli.progress import steps
    from onnx_lineage.demo.run import run_demo

    with steps(not (json or quiet)) as step:
        step("training the demo family on the built-in digits")
        r = run_demo(out, seed=seed, device=device.value,
                     progress=lambda name: step(f"analysing {name}"), report=report)
    if json:
        render.emit_json(r)
        return
    c = render.console()
    p = r.parent
    c.print(f"parent: {p['n_params']:,} parameters in {len(p['layers'])} layers, "
            f"output {p['output']} ({p['output_kind']}), provider {p['provider']}")
    c.print(render.table("every family member against the parent",
                         ["model", "expected", "verdict", "p-value", "seen by", "closeness",
                          "95% CI"],
                         [[x["model"], x["expected"],
                           x["verdict"] + ("" if x["correct"] else " (!)"),
                           render.pval(x["p_value"]), x["evidence"], x["closeness"],
                           f"{x['ci95'][0]:.3f}-{x['ci95'][1]:.3f}"]
                          for x in r.rows]))
    for x in r.rows:
        c.print(f"  {x['model']}: {x['description']}")
    c.print("  p-value: independence tests combined (related when <= 0.01); seen by: the tests "
            "that reject")
    c.print(f"{r.correct}/{r.total} verdicts as expected, in {r.seconds:.1f} s; files: {r.folder}")
    c.print(f"example report (parent -> finetuned_heavy): {r.report}")
