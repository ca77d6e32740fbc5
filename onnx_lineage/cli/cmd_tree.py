"""``onnx-lineage tree MODEL... | DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnx_lineage.cli.options import (AlphaOpt, DataOpt, Device, DeviceOpt, JsonOpt,
                                      MaxMemoryOpt, QuietOpt, SeedOpt, SharedLabelsOpt,
                                      use_memory)

NAME = "tree"

ModelsArg = Annotated[list[Path], typer.Argument(help="ONNX files, or folders searched for *.onnx.",
                                                 show_default=False)]
RayOpt = Annotated[Optional[str], typer.Option("--ray", help="Run the pairwise work on Ray: "
                                               "'auto' (an existing cluster), 'local', or an address.")]
ReportOpt = Annotated[Optional[Path], typer.Option("--report", help="Write an HTML view of the forest.")]
MermaidOpt = Annotated[bool, typer.Option("--mermaid", help="Print the forest as Mermaid text.")]


def command(models: ModelsArg, data: DataOpt = None, seed: SeedOpt = 0,
            device: DeviceOpt = Device.auto, ray: RayOpt = None, report: ReportOpt = None,
            mermaid: MermaidOpt = False, json: JsonOpt = False, quiet: QuietOpt = False,
            alpha: AlphaOpt = 0.01, shared_labels: SharedLabelsOpt = False,
            max_memory: MaxMemoryOpt = None) -> None:
    """Lineage forest over many models: which share lineage, and who derives from whom. Pairs
    are joined only where the exact tests reject independence, at --alpha for the whole run
    (divided among the tests)."""
    use_memory(max_memory)
    from onnx_lineage.cli import render
    from onnx_lineage.cli.progress import steps
    from onnx_lineage.data import load_data
    from onnx_lineage.report.atomic import write_atomic
    from onnx_lineage.report.tree import tree_html
    from onnx_lineage.zoo import tree

    ds = load_data(data) if data is not None else None
    with steps(not (json or quiet)) as step:
        r = tree(models, ds, seed=seed, device=device.value, ray=ray, progress=step, alpha=alpha,
                 label_space="shared" if shared_labels else "same")
    if report is not None:
        write_atomic(report, tree_html(r))
    if json:
        render.emit_json(r)
        return
    if mermaid:
        print(r.mermaid)
        return
    render_tree(r)


def render_tree(r) -> None:
    """The forest as rich trees, then the counts."""
    from rich.tree import Tree

    from onnx_lineage.cli import render
    c = render.console()
    children: dict[str, list[dict]] = {}
    for e in r.edges:
        children.setdefault(e["parent"], []).append(e)

    def grow(node, name):
        for e in sorted(children.get(name, []), key=lambda e: e["child"]):
            clo = "-" if e["closeness"] is None else f"{e['closeness']:.3f}"
            conf = (f", direction confidence {e['confidence']:.2f}"
                    if e.get("direction", "decided") == "decided"
                    else f", direction undecided: {e['confidence']:.2f}")
            adapter = "" if e.get("adapter") is None else f", adapter of rank {e['adapter']}"
            grow(node.add(f"{e['child']}  [dim](closeness {clo}{adapter}{conf})[/dim]"),
                 e["child"])

    for root in r.roots:
        t = Tree(f"[bold]{root}[/bold]")
        grow(t, root)
        c.print(t)
    c.print(f"{len(r.models)} models, {r.all_pairs} pairs: {r.candidates} candidates after "
            f"screening, {r.exact_tests} exact tests at {r.alpha_per_test:.2g} each (alpha "
            f"{r.alpha:g} for the run), {r.related_pairs} related; executor {r.executor}; "
            f"{r.seconds:.1f} s")
    for m in r.merges or []:
        shares = ", ".join(f"{p['parent']} {p['share']:.3f}" for p in m["parents"])
        base = f" from {m['base']}" if m.get("base") else ""
        c.print(f"- merge: {m['child']} is a {m['recipe']} merge of {shares}{base}", markup=False)
    for f in r.failed:
        c.print(f"- not tested: {f['a']} / {f['b']}: {f['error']}")
    for note in r.notes or []:
        c.print(f"- {note}", markup=False)
