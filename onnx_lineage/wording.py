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
