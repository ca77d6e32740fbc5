"""Rendering results: JSON on stdout, or rich tables. No numerics here."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

from onnx_lineage.evidence.registry import registered
from onnx_lineage.evidence.verdict import gated
from onnx_lineage.wording import p_text


def console() -> Console:
    """A console on stdout (tables); 120 columns when stdout is not a terminal."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def emit_json(result, **extra) -> None:
    """Exactly one JSON document on stdout (``extra`` fields added to the result's)."""
    from onnx_lineage.results import to_jsonable  # numpy: not for --help
    d = result.to_dict()
    d.update(to_jsonable(extra))
    sys.stdout.write(json.dumps(d, indent=2, allow_nan=False) + "\n")


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


def pval(p) -> str:
    """A p-value for a table cell: ``-`` when not computed, ``<1e-300`` at the floor."""
    return p_text(p)


def tests_table(tests: list, alpha: float) -> Table:
    """One row per independence test: statistic, p-value, the level it is read at (its share of
    ``alpha``, :mod:`onnx_lineage.evidence.registry`), power."""
    rows, is_gated = [], gated(tests)
    for t in tests:
        info = registered(t.name)
        stat = "-" if t.statistic is None else f"{t.statistic:.4f}"
        rows.append([info.title, stat, pval(t.p_value), f"{info.level(alpha, is_gated):.2g}",
                     "yes" if t.power else "no", t.reason])
    return table("independence tests", ["test", "statistic", "p-value", "level", "power",
                                        "outcome"], rows)


def classes_table(tests: list) -> Table | None:
    """Per symmetry class: its layers, units kept in A's order and matched cosine, p-values
    (one row per class, names made unique: :func:`onnx_lineage.report.render.class_rows`)."""
    from onnx_lineage.report.render import class_rows, function_ran
    rows = class_rows(tests)
    if not rows:
        return None
    function = function_ran(rows)
    return table("per class", ["class", "layers", "units", "in A's order", "p (order)",
                               "cosine (aligned)", "p (aligned)"]
                 + ["function", "p (function)"] * function,
                 [[r["name"], ",".join(map(str, r["layers"])), str(r["units"]),
                   "-" if r["fixed_points"] is None else str(r["fixed_points"]),
                   pval(r["p_order"]), "-" if r["similarity"] is None else f"{r['similarity']:.3f}",
                   pval(r["p_aligned"])]
                  + [r["function"] or "-", pval(r["p_function"])] * function for r in rows])
