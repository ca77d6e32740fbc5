"""Rendering results: JSON on stdout, or rich tables. No numerics here."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def console() -> Console:
    """A console on stdout (tables); 120 columns when stdout is not a terminal."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def emit_json(result) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(result.to_json() + "\n")


def fmt(value, digits: int = 4) -> str:
    """A number for a table cell (``-`` for None)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def kv_table(title: str, rows: list[tuple[str, object]]) -> Table:
    """A two-column key/value table."""
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, fmt(v) if not isinstance(v, str) else v)
    return t


def table(title: str, columns: list[str], rows: list[list]) -> Table:
    """A table with a header row."""
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[fmt(v) if not isinstance(v, str) else v for v in r])
    return t
