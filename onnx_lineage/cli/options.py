"""Options shared by several commands (typer ``Annotated`` types)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class OutputKind(str, Enum):
    auto = "auto"
    logits = "logits"
    probabilities = "probabilities"
    labels = "labels"
    embedding = "embedding"
    regression = "regression"


ModelArg = Annotated[Path, typer.Argument(help="An ONNX file.", show_default=False)]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="A .npy or .npz data file "
                                                 "(default: the built-in handwritten digits).")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Random seed; the same seed gives the "
                                      "same numbers.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where onnxruntime runs.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr.")]
OutputOpt = Annotated[OutputKind, typer.Option("--output", help="What the model's prediction output "
                                               "holds (auto decides from the graph).")]
AlphaOpt = Annotated[float, typer.Option("--alpha", min=1e-12, max=0.5,
                                         help="Level of the verdict: related only when the tests "
                                              "reject independence at it.")]
SharedLabelsOpt = Annotated[bool, typer.Option(
    "--shared-labels", help="When A and B score different numbers of classes (a new head), "
                            "compute closeness on the labels both have (0 to the smaller count "
                            "less one, label i taken to mean the same class in both) instead of "
                            "refusing it.")]
MaxMemoryOpt = Annotated[Optional[str], typer.Option(
    "--max-memory", help="Memory budget of the run (e.g. 4G): data, tensors and batches are "
                         "checked against it before allocation. Default: ONNX_LINEAGE_MAX_MEMORY, "
                         "else half the machine's memory.", show_default=False)]


def use_memory(max_memory: str | None) -> None:
    """Make ``--max-memory`` the run's budget (:mod:`onnx_lineage.memory`)."""
    if max_memory is not None:
        from onnx_lineage.memory import set_budget
        set_budget(max_memory)

AlsoOpt = Annotated[Optional[List[Path]], typer.Option(
    "--also", show_default=False, metavar="MODEL",
    help="Another candidate parent (once per model): whether B sits between A and it (a merge "
         "of them, with the shares).")]
