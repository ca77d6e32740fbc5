"""The ``onnx-lineage`` command line: one module per command, rendering in :mod:`.render`.

Commands import the library lazily, so ``--help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from onnx_lineage.cli import (cmd_analyze, cmd_closeness, cmd_demo, cmd_determine,  # noqa: F401
                              cmd_inspect, cmd_match, cmd_tree)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Is model B derived from model A? Lineage determination and closeness for "
                       "ONNX models from any framework.")

for _module in (cmd_inspect, cmd_match, cmd_determine, cmd_closeness, cmd_analyze, cmd_tree,
                cmd_demo):
    app.command(name=_module.NAME)(_module.command)


def main() -> None:
    """Console entry point: user errors and running out of memory become one line on stderr and
    exit code 1 (usage errors 2)."""
    from onnx_lineage.errors import LineageError
    try:
        app()
    except LineageError as exc:
        print(f"onnx-lineage: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except MemoryError as exc:  # numpy's _ArrayMemoryError among them: one line, never a traceback
        what = str(exc).splitlines()[0][:200] if str(exc) else "an allocation failed"
        print(f"onnx-lineage: error: out of memory ({what}); a lower --max-memory makes the run "
              "plan for less", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("onnx-lineage: interrupted", file=sys.stderr)
        sys.exit(130)
