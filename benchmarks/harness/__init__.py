"""The scaffolding every benchmark script shares, written once.

    import harness
    harness.checkout_first()            # this checkout's onnx_lineage before any installed one
    from harness import cli, results    # arguments and result files
    from harness.machine import machine # CPU, cores, versions
    from harness.memory import peak_rss_mb, run_child
    from harness.export import export_onnx      # torch -> ONNX (torch imported lazily)
    from harness.training import train          # the mini-batch loop (torch imported lazily)
    from harness.llama import Config, Llama     # a small Llama-style decoder (imports torch)

The scripts run as ``python benchmarks/NAME.py``, so ``benchmarks/`` is first on ``sys.path`` and
``import harness`` finds this package. Importing it changes nothing (``match_time.py`` times other
checkouts' code in its children); :func:`checkout_first` is the one call that edits ``sys.path``.
Modules:

* :mod:`harness.cli`: the argument conventions (``--json FILE``, ``--from FILE``, ``--markdown``,
  ``--check``);
* :mod:`harness.results`: JSON result files, written and read back;
* :mod:`harness.machine`: the machine line every result file carries;
* :mod:`harness.memory`: peak resident memory, of this process and of a CLI run in a child;
* :mod:`harness.export`: PyTorch models to ONNX files with a dynamic batch axis;
* :mod:`harness.training`: mini-batch training with Adam or SGD, seeded;
* :mod:`harness.llama`: a small Llama-style decoder in PyTorch, and the standard library's
  sources as byte-level text to train it on.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The repository root (the checkout these scripts belong to).
ROOT = Path(__file__).resolve().parents[2]
#: The folder of the benchmark scripts (``ROOT / "benchmarks"``).
BENCHMARKS = ROOT / "benchmarks"


def checkout_first() -> None:
    """Put :data:`ROOT` first on ``sys.path``: ``onnx_lineage`` (and ``tests``) then come from
    this checkout, whatever else is installed. Call it before importing ``onnx_lineage``."""
    sys.path.insert(0, str(ROOT))
