"""The command-line conventions of the benchmark scripts.

Each script builds its own parser and adds its options in its own order (their order is the
order of ``--help``); the options the scripts share are added here, so they mean the same
everywhere:

* ``--json FILE``: write the full result there (:func:`harness.results.write_json`);
* ``--from FILE``: read an earlier ``--json`` instead of running (``args.source``);
* ``--markdown``: print the tables of ``benchmarks/RESULTS.md``;
* ``--check``: exit non-zero unless the result passes the script's own check (CI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable


def parser(doc: str, paragraph: bool = False) -> argparse.ArgumentParser:
    """A parser described by the first line of the script's docstring ``doc`` (its first
    paragraph with ``paragraph``)."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0] if paragraph
                                   else doc.splitlines()[0])


def add_json(ap: argparse.ArgumentParser) -> None:
    """``--json FILE``: where the result file goes (``args.json``, None when not given)."""
    ap.add_argument("--json", type=Path)


def add_from(ap: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--from FILE``: an earlier ``--json`` to summarise instead of running (``args.source``)."""
    ap.add_argument("--from", dest="source", type=Path, help=help)


def add_markdown(ap: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--markdown``: print the tables of RESULTS.md instead of the JSON summary."""
    ap.add_argument("--markdown", action="store_true", help=help)


def add_check(ap: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--check``: exit non-zero when the result fails the script's check (CI)."""
    ap.add_argument("--check", action="store_true", help=help)


def document(args: argparse.Namespace, build: Callable[[Path], dict], newline: bool = False,
             what: str = "the models") -> dict:
    """The run's result: an earlier ``--json`` read back with ``--from``, else ``build(out)`` on
    the folder ``args.out`` (exits with a one-line message when none is given), written to
    ``--json`` when one is given."""
    from harness import results
    if args.source:
        return results.read_json(args.source)
    if args.out is None:
        sys.exit(f"give a folder for {what} (or --from FILE)")
    doc = build(args.out)
    if args.json:
        results.write_json(args.json, doc, newline=newline)
    return doc
