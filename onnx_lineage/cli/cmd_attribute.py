"""``onnx-lineage attribute B --parents A1 A2 ... [--base Q]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from onnx_lineage.cli.options import (AlphaOpt, JsonOpt, MaxMemoryOpt, ModelArg, QuietOpt,
                                      SeedOpt, use_memory)

NAME = "attribute"

ParentsOpt = Annotated[List[Path], typer.Option(
    "--parents", "-p", show_default=False, metavar="MODEL",
    help="The candidate parents: --parents A1 A2 ... (or the option once per model).")]
#: the files after the first parent's (``--parents A1 A2 A3``: A2 and A3)
MoreArg = Annotated[Optional[List[Path]], typer.Argument(show_default=False, hidden=True)]
BaseOpt = Annotated[Optional[Path], typer.Option(
    "--base", show_default=False,
    help="The model the parents were fine-tuned from: B is then fitted as the base plus the "
         "parents' task vectors.")]


def command(model_b: ModelArg, parents: ParentsOpt, more: MoreArg = None,
            base: BaseOpt = None, alpha: AlphaOpt = 0.01, seed: SeedOpt = 0,
            json: JsonOpt = False, quiet: QuietOpt = False,
            max_memory: MaxMemoryOpt = None) -> None:
    """Which parents B was made from, and in what share: each candidate tested for independence
    from B, the related ones fitted layer by layer (linear and SLERP averages, task arithmetic
    from --base), the remainder's rank (an adapter on top, or training after)."""
    use_memory(max_memory)
    from onnx_lineage.analyses.attribution import attribute
    from onnx_lineage.cli import render
    from onnx_lineage.cli.progress import steps

    with steps(not (json or quiet)) as step:
        r = attribute(model_b, list(parents) + list(more or []), base, alpha=alpha, seed=seed,
                      progress=step)
    if json:
        render.emit_json(r)
        return
    c = render.console()
    c.print(render.table(f"{r.model}: {r.recipe}", ["parent", "p (independence)", "related",
                                                     "share", "95% interval", "p (made without it)"],
                         [[s.parent, render.pval(s.p_value), "yes" if s.related else "no",
                           "-" if s.share is None else f"{s.share:.4f}",
                           "-" if s.interval is None else
                           f"{s.interval[0]:.4f} to {s.interval[1]:.4f}",
                           render.pval(s.p_share)] for s in r.parents]))
    c.print(r.statement)
    for line in r.notes:
        c.print(f"- {line}")
