"""The analysis report: self-contained HTML (plots embedded, no external links) or Markdown."""

from __future__ import annotations

import base64
import html
import math

from onnx_lineage.analyses.attribution import MERGES
from onnx_lineage.report import plots
from onnx_lineage.wording import p_text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.verdict{padding:1em 1.2em;border-radius:6px;font-size:1.1em;margin:1em 0}
.related{background:#e8f5e9;border-left:6px solid #2e7d32}
.unrelated{background:#fdecea;border-left:6px solid #c62828}
.undetermined{background:#fff8e1;border-left:6px solid #f9a825}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left} th{background:#f5f5f5}
img{max-width:100%} .muted{color:#666;font-size:.9em} code{background:#f4f4f4;padding:0 .2em}
"""


def _f(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _img(png: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}">')


def _table(rows, header=None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(_f(c))}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _p(p) -> str:
    return p_text(p, "n/a")


def class_rows(tests: list) -> list[dict]:
    """Per symmetry class, the unit-order, aligned and function tests side by side, one row per
    class.

    Classes are told apart by name and layers: a model with two residual streams has two classes
    named ``residual stream``, shown as ``residual stream #1`` and ``#2`` (in graph order).

    Parameters
    ----------
    tests : list of TestResult

    Returns
    -------
    list of dict
        ``name`` (unique), ``layers``, ``units``, ``fixed_points`` (in A's order), ``p_order``,
        ``similarity``, ``p_aligned``, ``function`` (units both matchings agree on, of those
        compared), ``p_function``; absent values None.
    """
    by = {t.name: {(c.name, tuple(c.layers)): c for c in t.classes} for t in tests}
    order, aligned = by.get("unit_order", {}), by.get("aligned", {})
    # the function test's rows span every layer of a gated class, the others' the layers that
    # agreed: by name (a gated class's name, its first layer's, is unique)
    function = {name: c for (name, _), c in by.get("function", {}).items()}
    keys = list(dict.fromkeys(list(order) + list(aligned)))
    count: dict[str, int] = {}
    for name, _ in keys:
        count[name] = count.get(name, 0) + 1
    seen: dict[str, int] = {}
    rows = []
    for key in keys:
        name = key[0]
        seen[name] = seen.get(name, 0) + 1
        u, a, f = order.get(key), aligned.get(key), function.get(name)
        first = u or a
        rows.append({"name": f"{name} #{seen[name]}" if count[name] > 1 else name,
                     "layers": first.layers, "units": first.units,
                     "fixed_points": u.in_order if u else None,
                     "p_order": u.p_value if u else None,
                     "similarity": a.similarity if a else None,
                     "p_aligned": a.p_value if a else None,
                     "function": f"{f.agree} of {f.compared}" if f else None,
                     "p_function": f.p_value if f else None})
    return rows


def function_ran(rows: list[dict]) -> bool:
    """Whether the function test has a row among ``rows`` (:func:`class_rows`): its columns are
    shown only then."""
    return any(r["p_function"] is not None for r in rows)


def headline(d, c) -> str:
    """The verdict and its evidence in plain words (determination ``d``, closeness ``c`` or None)."""
    verdict = {"related": "B is derived from A", "unrelated": "B was trained independently of A",
               "undetermined": "lineage could not be determined"}[d.verdict]
    text = f"{verdict}: {d.reason}."
    diff = d.difference
    if diff and any(x["low_rank"] for x in diff["layers"]):  # an adapter, in part or whole
        text += f" {diff['statement'][:1].upper()}{diff['statement'][1:]}."
    if d.between and d.between["recipe"] in MERGES:
        text += f" {d.between['statement']}."
    if c is not None:
        text += (f" Closeness {c.closeness:.3f} (95% CI {c.ci95[0]:.3f}-{c.ci95[1]:.3f}): the two "
                 f"models agree on {c.matching_rate:.0%} of boundary crossings.")
    return text


def _html_classes(tests: list) -> list:
    """The per-class section: where the evidence is, layer by layer (none without classes)."""
    rows = class_rows(tests)
    if not rows:
        return []
    return ["<h2>Where the evidence is, layer by layer</h2>",
            "<p>Per class of hidden units: how many of B's units sit in A's order (exact "
            "test), how closely their incoming weights agree after matching (calibrated "
            "test)" + (", how many gated units are matched to the same unit of B through both "
                       "their projections on the data (function test)" if function_ran(rows)
                       else "") + ", and the p-value of each.</p>",
            _img(plots.class_evidence(rows), "per-layer evidence"),
            _table([[r["name"], ",".join(map(str, r["layers"])), r["units"],
                     r["fixed_points"], _p(r["p_order"]), r["similarity"],
                     _p(r["p_aligned"])] + _function_cells(r, rows) for r in rows],
                   ["class", "layers", "units", "in A's order", "p (order)",
                    "cosine (aligned)", "p (aligned)"] + FUNCTION_COLUMNS * function_ran(rows))]


#: The per-class table's columns of the function test (where it ran).
FUNCTION_COLUMNS = ["same unit by gate and up (function)", "p (function)"]


def _function_cells(r: dict, rows: list[dict]) -> list:
    """Row ``r``'s cells in :data:`FUNCTION_COLUMNS` (none where the test ran on no class)."""
    return [r["function"] or "-", _p(r["p_function"])] if function_ran(rows) else []


def _html_boundaries(c) -> list:
    """The decision-boundary section (closeness, its interval, distances, matching rates)."""
    return ["<h2>Decision boundaries</h2>",
            _table([["closeness", c.closeness],
                    ["95% interval", f"{c.ci95[0]:.4f} - {c.ci95[1]:.4f}"],
                    ["matching rate", c.matching_rate],
                    ["distance similarity", c.distance_similarity],
                    ["mean boundary distance A / B",
                     f"{_f(c.mean_distance['a'])} / {_f(c.mean_distance['b'])}"],
                    ["points / rays", f"{c.points} / {c.rays}"],
                    ["queries A / B", f"{c.queries['a']} / {c.queries['b']}"],
                    ["directions", ", ".join(c.directions)], ["labels", c.labels]]),
            _img(plots.distances(c.distances["a"], c.distances["b"]), "boundary distances"),
            _img(plots.matching_by_class(c.matching_by_class), "matching rate by class")]


def to_html(r) -> str:
    """The whole report as one self-contained HTML page."""
    d, c, m = r.determination, r.closeness_detail, r.match
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>onnx-lineage: {html.escape(r.model_a)} vs {html.escape(r.model_b)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Lineage of <code>{html.escape(r.model_b)}</code> from "
             f"<code>{html.escape(r.model_a)}</code></h1>",
             f"<div class='verdict {d.verdict}'><b>{d.verdict.upper()}</b> &mdash; "
             f"{html.escape(r.summary)}</div>",
             "<h2>Evidence</h2>",
             _table([["verdict", d.verdict],
                     ["p-value (tests combined, weighted Bonferroni)", _p(d.p_value)],
                     ["alpha", d.alpha], ["shared layers", ", ".join(map(str, d.shared_layers))
                                          or "-"],
                     ["loss barrier, aligned (descriptive)", d.barrier],
                     ["barrier before alignment", d.barrier_unaligned],
                     ["coverage of A / B", f"{m['coverage']['a']:.1%} / {m['coverage']['b']:.1%}"],
                     ["matched parameters moved by the sweep", f"{d.interpolated_fraction:.0%}"],
                     ["loss criterion", d.criterion]]),
             "<h2>Independence tests</h2>",
             _table([[t.name, t.statistic, _p(t.p_value), "yes" if t.power else "no",
                      t.reason] for t in d.tests],
                    ["test", "statistic", "p-value", "power", "outcome"]),
             "<ul>" + "".join(f"<li><b>{html.escape(t.name)}</b>: null: "
                              f"{html.escape(t.null)}. "
                              + (f"Power: {html.escape(t.power_reason)}" if t.power_reason
                                 else html.escape(t.reason[:1].upper() + t.reason[1:]
                                                  if t.reason else "Not run"))
                              + "</li>" for t in d.tests) + "</ul>"]
    parts += _html_classes(d.tests)
    if d.curve:
        parts += ["<h2>Loss along the interpolation path</h2>",
                  "<p>A derived model stays under the straight line between the end losses. "
                  "After alignment, independent models often do too (alignment connects them), "
                  "so this curve is shown, not used to decide; the basin test compares B's "
                  "own path with those of permuted copies of B instead.</p>",
                  _img(plots.loss_path(d.curve, r.loss_scale), "loss along the path")]
    if m["pairs"]:
        parts += ["<h2>Layer correspondence</h2>",
                  _img(plots.layer_similarity(m["pairs"]), "per-layer similarity"),
                  _table([[p["a"], p["b"], p["kind"], "x".join(map(str, p["shape"])),
                           ", ".join(p["transforms"]) or "-", p["cosine"]] for p in m["pairs"]],
                         ["A", "B", "kind", "shape", "transforms", "cosine"])]
    if c is not None:
        parts += _html_boundaries(c)
    notes = list(m["transforms"]) + list(d.notes) + ([] if c is None else list(c.notes))
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f"<h2>Transforms and notes</h2><ul>{items}</ul>")
    parts.append(f"<p class='muted'>onnx-lineage {r.version}; provider {html.escape(d.provider)}; "
                 f"seed {r.seed}; {r.seconds:.1f} s.</p></body></html>")
    return "\n".join(parts)


def to_markdown(r) -> str:
    """The report as Markdown, for pull requests (tables, no images)."""
    d, c, m = r.determination, r.closeness_detail, r.match
    lines = [f"## Lineage of `{r.model_b}` from `{r.model_a}`: **{d.verdict.upper()}**", "",
             r.summary, "", "| evidence | value |", "|---|---|",
             f"| p-value (tests combined) | {_p(d.p_value)} (alpha {d.alpha:g}) |",
             f"| shared layers | {', '.join(map(str, d.shared_layers)) or '-'} |",
             f"| loss barrier, aligned (descriptive) | {_f(d.barrier)} |",
             f"| barrier before alignment | {_f(d.barrier_unaligned)} |",
             f"| coverage A / B | {m['coverage']['a']:.1%} / {m['coverage']['b']:.1%} |"]
    lines += ["", "| test | statistic | p-value | power | outcome |", "|---|---|---|---|---|"]
    lines += [f"| {t.name} | {_f(t.statistic)} | {_p(t.p_value)} | "
              f"{'yes' if t.power else 'no'} | {t.reason} |" for t in d.tests]
    rows = class_rows(d.tests)
    if rows:
        extra = FUNCTION_COLUMNS * function_ran(rows)
        lines += ["", "| class | layers | units | in A's order | p (order) | cosine (aligned) | "
                  "p (aligned) |" + "".join(f" {h} |" for h in extra),
                  "|---|---|---|---|---|---|---|" + "---|" * len(extra)]
        lines += [f"| {r['name']} | {','.join(map(str, r['layers']))} | {r['units']} | "
                  f"{_f(r['fixed_points'])} | {_p(r['p_order'])} | {_f(r['similarity'])} | "
                  f"{_p(r['p_aligned'])} |" + "".join(f" {c} |" for c in _function_cells(r, rows))
                  for r in rows]
    if c is not None:
        lines += ["", "| decision boundaries | value |", "|---|---|",
                  f"| closeness | {c.closeness:.4f} [{c.ci95[0]:.4f}, {c.ci95[1]:.4f}] |",
                  f"| matching rate | {c.matching_rate:.4f} |",
                  f"| distance similarity | {c.distance_similarity:.4f} |",
                  f"| queries A / B | {c.queries['a']} / {c.queries['b']} |"]
    if d.curve:
        lines += ["", "| alpha | loss | error |", "|---|---|---|"]
        lines += [f"| {x['alpha']:.3f} | {x['loss']:.4f} | {_f(x['error'])} |" for x in d.curve]
    if m["pairs"]:
        lines += ["", "| A | B | kind | shape | transforms | cosine |", "|---|---|---|---|---|---|"]
        lines += [f"| {p['a']} | {p['b']} | {p['kind']} | {'x'.join(map(str, p['shape']))} | "
                  f"{', '.join(p['transforms']) or '-'} | {p['cosine']:.4f} |" for p in m["pairs"]]
    return "\n".join(lines) + "\n"
