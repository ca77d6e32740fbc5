"""The ``onnx-lineage`` command line: one module per command, rendering in :mod:`.render`.

Commands import the library lazily, so ``--help`` stays fast. Help is plain text (typer's rich
panels label every flag ``<bool>``).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import typer

from onnx_lineage.cli import (cmd_analyze, cmd_attribute, cmd_closeness, cmd_demo,  # noqa: F401
                              cmd_determine, cmd_inspect, cmd_match, cmd_tree)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Is model B derived from model A? Lineage determination and closeness for "
                       "ONNX models from any framework.")

#: Exit code of an internal error (a bug in onnx-lineage, not in the user's files).
INTERNAL_ERROR = 3
_options = {"debug": os.environ.get("ONNX_LINEAGE_DEBUG", "") not in ("", "0")}


def _version(value: bool) -> None:
    if value:
        from onnx_lineage import __version__
        print(f"onnx-lineage {__version__}")
        raise typer.Exit()


@app.callback()
def _global(debug: bool = typer.Option(
        False, "--debug", help="On an internal error, show Python's full traceback (also "
                               "ONNX_LINEAGE_DEBUG=1)."),
            version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                         help="Print the version and exit.")) -> None:
    """Is model B derived from model A? Lineage determination and closeness for ONNX models from
    any framework."""
    _options["debug"] = _options["debug"] or debug


for _module in (cmd_inspect, cmd_match, cmd_determine, cmd_closeness, cmd_analyze, cmd_tree,
                cmd_attribute, cmd_demo):
    app.command(name=_module.NAME)(_module.command)


def main() -> None:
    """Console entry point: user errors and running out of memory become one line on stderr and
    exit code 1 (usage errors 2)."""
    from onnx_lineage.errors import LineageError
    try:
        app(prog_name="onnx-lineage")
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
    except Exception as exc:  # a bug: one line (with --debug the whole traceback)
        if _options["debug"] or "--debug" in sys.argv[1:]:
            raise
        print(f"onnx-lineage: internal error: {internal_message(exc)}", file=sys.stderr)
        sys.exit(INTERNAL_ERROR)


def internal_message(exc: BaseException) -> str:
    """One line for a bug: the exception, the innermost place in onnx-lineage it came from, the
    step the run was in, and how to report it."""
    from onnx_lineage.cli.progress import current
    text = " ".join(str(exc).split())[:200]
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    root = Path(__file__).resolve().parents[2]
    ours = [f for f in traceback.extract_tb(exc.__traceback__)
            if Path(f.filename).resolve().is_relative_to(root)
            and Path(f.filename).resolve().relative_to(root).parts[0] in ("onnx_lineage", "kernels")]
    where = ""
    if ours:
        f = ours[-1]
        where = f" at {Path(f.filename).resolve().relative_to(root)}:{f.lineno} ({f.name})"
    during = f" while {current['step']}" if current["step"] else ""
    return (f"{what}{where}{during}. This is a bug in onnx-lineage: please report it with the "
            "output of the same command run with --debug")
