"""HTML view of a lineage forest: nested lists and an edge table, self-contained."""

from __future__ import annotations

import html


def tree_html(r) -> str:
    """One self-contained page for a TreeResult."""
    children: dict[str, list[dict]] = {}
    for e in r.edges:
        children.setdefault(e["parent"], []).append(e)

    def ul(name: str) -> str:
        kids = sorted(children.get(name, []), key=lambda e: e["child"])
        if not kids:
            return ""
        items = []
        for e in kids:
            clo = "n/a" if e["closeness"] is None else f"{e['closeness']:.3f}"
            items.append(f"<li><b>{html.escape(e['child'])}</b> <span class='m'>closeness {clo}, "
                         f"direction confidence {e['confidence']:.2f}</span>{ul(e['child'])}</li>")
        return "<ul>" + "".join(items) + "</ul>"

    rows = "".join(
        f"<tr><td>{html.escape(e['parent'])}</td><td>{html.escape(e['child'])}</td>"
        f"<td>{'n/a' if e['closeness'] is None else format(e['closeness'], '.3f')}</td>"
        f"<td>{e['similarity']:.4f}</td><td>{e['confidence']:.2f}</td>"
        f"<td>{html.escape('; '.join(e['evidence']) or '-')}</td></tr>" for e in r.edges)
    forest = "".join(f"<li><b>{html.escape(root)}</b>{ul(root)}</li>" for root in r.roots)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>onnx-lineage "
            f"forest</title><style>body{{font-family:system-ui,sans-serif;max-width:960px;"
            f"margin:2em auto;padding:0 1em}} .m{{color:#666;font-size:.9em}} table{{border-collapse:"
            f"collapse}} td,th{{border:1px solid #ddd;padding:.3em .6em}}</style></head><body>"
            f"<h1>Lineage forest of {len(r.models)} models</h1>"
            f"<p>{r.candidates} candidate pairs of {r.all_pairs} after screening; {r.exact_tests} "
            f"exact tests; {r.related_pairs} related. Roots: {len(r.roots)}.</p>"
            f"<ul>{forest}</ul><h2>Edges</h2><table><tr><th>parent</th><th>child</th>"
            f"<th>closeness</th><th>weight cosine</th><th>direction confidence</th>"
            f"<th>evidence</th></tr>{rows}</table></body></html>")
