"""``onnx-lineage analyze A B``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from onnx_lineage.cli.options import (AlphaOpt, AlsoOpt, DataOpt, Device, DeviceOpt, JsonOpt,
                                      MaxMemoryOpt, ModelArg, OutputKind, OutputOpt, QuietOpt,
                                      SeedOpt, SharedLabelsOpt, use_memory)

NAME = "analyze"


class Expect(str, Enum):
    related = "related"
    unrelated = "unrelated"


ReportOpt = Annotated[Optional[Path], typer.Option("--report", help="Write a report: FILE.html "
                                                   "(self-contained, with plots) or FILE.md.")]
ExpectOpt = Annotated[Optional[Expect], typer.Option("--expect", help="Exit 1 unless the verdict "
                                                     "is this (for CI gates).")]
PointsOpt = Annotated[int, typer.Option("--points", min=1, help="Most points for closeness.")]


def command(model_a: ModelArg, model_b: ModelArg, data: DataOpt = None, seed: SeedOpt = 0,
            device: DeviceOpt = Device.auto, output: OutputOpt = OutputKind.auto,
            points: PointsOpt = 256, alpha: AlphaOpt = 0.01, report: ReportOpt = None,
            expect: ExpectOpt = None, shared_labels: SharedLabelsOpt = False,
            json: JsonOpt = False, quiet: QuietOpt = False,
            max_memory: MaxMemoryOpt = None, also: AlsoOpt = None) -> None:
    """Correspondence, determination and closeness of B against A in one run, with an optional
    HTML or Markdown report and a CI gate (--expect)."""
    use_memory(max_memory)
    from onnx_lineage.analysis import analyze, check_expect
    from onnx_lineage.cli import render
    from onnx_lineage.cli.cmd_closeness import render_closeness
    from onnx_lineage.cli.cmd_determine import render_determination
    from onnx_lineage.cli.progress import steps
    from onnx_lineage.data import load_data
    from onnx_lineage.errors import LineageError
    from onnx_lineage.report.atomic import write_atomic

    if report is not None and report.suffix.lower() not in (".html", ".htm", ".md"):
        raise typer.BadParameter("the report must end in .html or .md", param_hint="--report")
    ds = load_data(data) if data is not None else None
    with steps(not (json or quiet)) as step:
        r = analyze(model_a, model_b, ds, seed=seed, device=device.value, output=output.value,
                    points=points, alpha=alpha,
                    label_space="shared" if shared_labels else "same", progress=step,
                    also=also or ())
    if report is not None:
        text = r.to_markdown() if report.suffix.lower() == ".md" else r.to_html()
        try:
            write_atomic(report, text)
        except OSError as exc:
            raise LineageError(f"cannot write {report}: {exc.strerror}") from None
    if json:
        render.emit_json(r)
    else:
        render_determination(r.determination)
        if r.closeness_detail is not None:
            render_closeness(r.closeness_detail)
        render.console().print(r.summary)
        if report is not None:
            render.console().print(f"report: {report}")
    check_expect(r, expect.value if expect else None)
