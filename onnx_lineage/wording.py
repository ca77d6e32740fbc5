"""Small pieces of wording shared by the reports of several analyses."""

from __future__ import annotations


def ranges(indices: list[int]) -> str:
    """Sorted layer indices as runs: ``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    out, start = [], None
    for i, x in enumerate(indices):
        if start is None:
            start = x
        if i + 1 == len(indices) or indices[i + 1] != x + 1:
            out.append(f"{start}" if start == x else f"{start}-{x}")
            start = None
    return ", ".join(out)


def p_text(p, missing: str = "-") -> str:
    """A p-value for a table or a label: ``missing`` when not computed, ``<1e-300`` at the
    floor, two significant digits from 1e-3 up, scientific below."""
    if p is None:
        return missing
    return "<1e-300" if p <= 1e-300 else f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"
