"""HTML view of a lineage forest: the forest drawn (inline SVG), an edge table, the notes.

Self-contained: no script, no external asset. Each tree is drawn top-down from its root, every
model a box, every edge a line labelled with the exact tests' p-value, the closeness and the
direction's confidence (solid: decided, dashed: undecided), so a reader sees at once where the
evidence is strong and where the direction is a guess.
"""

from __future__ import annotations

import html

from onnx_lineage.wording import p_text

#: Layout of the drawing, in pixels.
_SLOT, _ROW, _BOX_H, _CHAR = 150, 110, 26, 7.0


def tree_html(r) -> str:
    """One self-contained page for a TreeResult."""
    rows = "".join(
        f"<tr><td>{_e(e['parent'])}</td><td>{_e(e['child'])}</td><td>{_p(e.get('p_value'))}</td>"
        f"<td>{_num(e['closeness'])}</td><td>{e['similarity']:.4f}</td>"
        f"<td>{'-' if e.get('adapter') is None else e['adapter']}</td>"
        f"<td>{e['direction']} ({e['confidence']:.2f})</td>"
        f"<td>{_e('; '.join(e['evidence']) or '-')}</td></tr>" for e in r.edges)
    notes = "".join(f"<li>{_e(n)}</li>" for n in (r.notes or []))
    merges = "".join(
        f"<tr><td>{_e(m['child'])}</td><td>{_e(m['recipe'])}"
        f"{'' if not m.get('base') else ' from ' + _e(m['base'])}</td><td>"
        + ", ".join(f"{_e(p['parent'])} {p['share']:.3f}" for p in m["parents"])
        + f"</td><td>{_e(m['statement'])}</td></tr>" for m in (r.merges or []))
    failed = "".join(f"<li>{_e(f['a'])} / {_e(f['b'])}: {_e(f['error'])}</li>" for f in r.failed)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>onnx-lineage "
            f"forest</title><style>body{{font-family:system-ui,sans-serif;max-width:1100px;"
            f"margin:2em auto;padding:0 1em}} table{{border-collapse:collapse}} td,th{{border:1px "
            f"solid #ddd;padding:.3em .6em;vertical-align:top}} .svg{{overflow-x:auto}}</style>"
            f"</head><body><h1>Lineage forest of {len(r.models)} models</h1>"
            f"<p>{r.candidates} candidate pairs of {r.all_pairs} after screening; {r.exact_tests} "
            f"exact tests, each at level {r.alpha_per_test:.2g} (family-wise {r.alpha:g}); "
            f"{r.related_pairs} related. {len(r.roots)} root(s).</p>"
            f"<div class='svg'>{forest_svg(r.roots, r.edges, r.merges)}</div>"
            f"<p>Above each child: the p-value of the exact tests that joined it to its parent, "
            f"the closeness (c) and the direction's confidence (dir); a solid line is a decided "
            f"direction, a dashed one undecided; a dotted orange line, a merge's other parent "
            f"with its share.</p>"
            + (f"<h2>Merges</h2><table><tr><th>model</th><th>recipe</th><th>parents and shares"
               f"</th><th>statement</th></tr>{merges}</table>" if merges else "")
            + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
            + (f"<h2>Pairs that could not be tested</h2><ul>{failed}</ul>" if failed else "")
            + f"<h2>Edges</h2><table><tr><th>parent</th><th>child</th><th>p-value</th>"
            f"<th>closeness</th><th>weight cosine</th><th>adapter rank</th><th>direction</th>"
            f"<th>evidence</th></tr>"
            f"{rows}</table></body></html>")


def forest_svg(roots: list[str], edges: list[dict], merges: list | None = None) -> str:
    """The forest as an inline SVG: one tree after another, roots on top; a merge's parents other
    than its tree parent joined to it by dotted lines labelled with their shares."""
    children: dict[str, list[dict]] = {}
    for e in edges:
        children.setdefault(e["parent"], []).append(e)
    at: dict[str, tuple[float, int]] = {}
    slot = 0

    def place(name: str, depth: int) -> float:
        nonlocal slot
        kids = sorted(children.get(name, []), key=lambda e: e["child"])
        if not kids:
            x = (slot + 0.5) * _SLOT
            slot += 1
        else:
            xs = [place(e["child"], depth + 1) for e in kids]
            x = (min(xs) + max(xs)) / 2
        at[name] = (x, depth)
        return x

    for root in roots:
        place(root, 0)
    depth = max((d for _, d in at.values()), default=0)
    width, height = max(slot, 1) * _SLOT, (depth + 1) * _ROW + _BOX_H
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height}' "
             f"viewBox='0 0 {width:.0f} {height}' font-family='system-ui,sans-serif' "
             f"font-size='11' role='img' aria-label='lineage forest'>"]
    for e in edges:
        if e["parent"] not in at or e["child"] not in at:
            continue
        (x0, d0), (x1, d1) = at[e["parent"]], at[e["child"]]
        y0, y1 = d0 * _ROW + _BOX_H + 8, d1 * _ROW + 8
        dash = "" if e["direction"] == "decided" else " stroke-dasharray='5 4'"
        parts.append(f"<line x1='{x0:.0f}' y1='{y0}' x2='{x1:.0f}' y2='{y1}' stroke='#555'"
                     f"{dash}/>")
        top = (f"p {_p(e.get('p_value'))}" if e.get("p_value") is not None else "p -")
        bottom = ("" if e["closeness"] is None else f"c {e['closeness']:.2f} · ") + (
            "" if e.get("adapter") is None else f"adapter r{e['adapter']} · ") + \
            f"dir {e['confidence']:.2f}"
        for k, text in enumerate((top, bottom)):  # above the child, on a halo over the line
            parts.append(f"<text x='{x1:.0f}' y='{y1 - 22 + 12 * k}' text-anchor='middle' "
                         f"fill='#333' stroke='#fff' stroke-width='3' paint-order='stroke'>"
                         f"{_e(text)}</text>")
    parts += _merge_lines(at, edges, merges or [])
    for name, (x, d) in at.items():
        shown = name if len(name) * _CHAR < _SLOT - 16 else name[: int((_SLOT - 28) / _CHAR)] + "…"
        w = min(len(shown) * _CHAR + 16, _SLOT - 8)
        fill = "#dbe9f6" if d == 0 else "#f4f4f4"
        parts.append(f"<g><title>{_e(name)}</title><rect x='{x - w / 2:.0f}' y='{d * _ROW + 8}' "
                     f"width='{w:.0f}' height='{_BOX_H}' rx='5' fill='{fill}' stroke='#888'/>"
                     f"<text x='{x:.0f}' y='{d * _ROW + 8 + _BOX_H / 2 + 4:.0f}' "
                     f"text-anchor='middle'>{_e(shown)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def _merge_lines(at: dict, edges: list[dict], merges: list) -> list[str]:
    """SVG of each merge's other parents: a dotted line from each to the merged model, its share
    at the middle."""
    tree_parent = {e["child"]: e["parent"] for e in edges}
    parts = []
    for m in merges:
        for p in m["parents"]:
            drawn = {p["parent"], m["child"]} <= set(at)
            if tree_parent.get(m["child"]) == p["parent"] or not drawn:
                continue
            (x0, d0), (x1, d1) = at[p["parent"]], at[m["child"]]
            y0, y1 = d0 * _ROW + _BOX_H + 8, d1 * _ROW + 8
            parts.append(f"<line x1='{x0:.0f}' y1='{y0}' x2='{x1:.0f}' y2='{y1}' stroke='#d9822b' "
                         f"stroke-dasharray='2 3'/><text x='{(x0 + x1) / 2:.0f}' "
                         f"y='{(y0 + y1) / 2:.0f}' text-anchor='middle' fill='#b35900' "
                         f"stroke='#fff' stroke-width='3' paint-order='stroke'>"
                         f"{_e(m['recipe'])} {p['share']:.2f}</text>")
    return parts


def _e(text) -> str:
    return html.escape(str(text))


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _p(p) -> str:
    return p_text(p)
