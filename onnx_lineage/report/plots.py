"""Plots for reports, as PNG bytes (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import io

import numpy as np


def _figure(width=6.0, height=3.2):
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def loss_path(curve: list[dict], scale: float) -> bytes:
    """Loss along the interpolation path and the straight line between the end losses."""
    plt, fig, ax = _figure()
    a = np.array([c["alpha"] for c in curve])
    v = np.array([c["loss"] for c in curve])
    line = (1 - a) * v[0] + a * v[-1]
    ax.plot(a, v, "o-", color="#1f5fa8", label="loss of the interpolated model")
    ax.plot(a, line, "--", color="#666", label="straight line between the ends")
    ax.set_xlabel("t, the position on the path (0 = A, 1 = B aligned)")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def layer_similarity(pairs: list[dict]) -> bytes:
    """Cosine similarity of each matched layer after alignment."""
    plt, fig, ax = _figure(6.0, 2.8)
    labels = [f"{p['a']}:{p['kind']}" for p in pairs]
    ax.bar(range(len(pairs)), [p["cosine"] for p in pairs], color="#1f5fa8")
    ax.set_xticks(range(len(pairs)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(min(0.0, min((p["cosine"] for p in pairs), default=0)), 1.05)
    ax.set_ylabel("cosine after alignment")
    return _png(plt, fig)


def distances(da: np.ndarray, db: np.ndarray) -> bytes:
    """Histograms of the boundary distances found for A and B."""
    plt, fig, ax = _figure()
    fa, fb = da[np.isfinite(da)], db[np.isfinite(db)]
    hi = max(fa.max() if fa.size else 1.0, fb.max() if fb.size else 1.0)
    bins = np.linspace(0, hi, 30)
    ax.hist(fa, bins=bins, alpha=0.6, label="A", color="#1f5fa8")
    ax.hist(fb, bins=bins, alpha=0.6, label="B", color="#e67e22")
    ax.set_xlabel("distance to the decision boundary")
    ax.set_ylabel("rays")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def matching_by_class(by_class: dict) -> bytes:
    """Matching rate per class of A."""
    plt, fig, ax = _figure(6.0, 2.6)
    keys = sorted(by_class, key=lambda k: int(k))
    ax.bar(keys, [by_class[k] for k in keys], color="#27ae60")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("class predicted by A")
    ax.set_ylabel("matching rate")
    return _png(plt, fig)


def class_evidence(rows: list[dict]) -> bytes:
    """Per class: -log10 of the unit-order and aligned p-values (bars; the function test's too
    where it ran) and the matched cosine."""
    plt, fig, _ = class_evidence_figure(rows)
    return _png(plt, fig)


def class_evidence_figure(rows: list[dict]):
    """``(pyplot, figure, axes)`` of :func:`class_evidence`, laid out, not yet saved."""
    plt, fig, ax = _figure(6.4, 3.0)
    x = np.arange(len(rows))

    def strength(p):
        return 0.0 if p is None else min(-np.log10(max(p, 1e-300)), 300.0)

    series = [("p_order", "#1f5fa8", "unit order: -log10 p"),
              ("p_aligned", "#e67e22", "aligned: -log10 p")]
    if any(r.get("p_function") is not None for r in rows):
        series.append(("p_function", "#8e44ad", "function: -log10 p"))
    width = 0.8 / len(series)
    for k, (key, color, label) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, [strength(r.get(key)) for r in rows],
               width, color=color, label=label)
    ax.set_yscale("symlog", linthresh=2)
    ax.set_ylabel("-log10 p")
    ax.set_xticks(x, [r["name"] for r in rows], rotation=45, ha="right", fontsize=7)
    twin = ax.twinx()
    twin.plot(x, [np.nan if r["similarity"] is None else r["similarity"] for r in rows], "o",
              color="#27ae60", label="matched cosine")
    twin.set_ylim(-0.05, 1.05)
    twin.set_ylabel("matched cosine")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    # above the axes, in one row: inside them it covered the last classes' bars
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, ncol=3, frameon=False,
              loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return plt, fig, ax
