"""Layouts of the same convolution weights: spatial axes dropped, added or swapped.

Re-exports of one network store its kernels in more than one way: a Keras ``Conv1D`` kernel
``(out, in, k)`` is a PyTorch ``Conv2d`` kernel ``(out, in, k, 1)`` once converted; a package that
feeds its images transposed stores ``(out, in, w, h)`` where the original has ``(out, in, h, w)``,
and flattens its last feature map in that order too. Compared as stored, the same weights look
unrelated (or cannot be paired at all). :func:`kernel_layout` tells the layouts apart by shape;
:func:`swapped_by_weights` tells a swap of square kernels by second moments that no permutation
of units or input channels changes; :func:`to_a_layout` puts B's kernels in A's.
"""

from __future__ import annotations

import numpy as np

from onnx_lineage.model.parameters import as_single

#: A swap of square kernels is read from the weights only when the crossed second moments are
#: closer than this share of the straight ones (two layouts equally close say nothing).
SWAP_MARGIN = 0.5


def kernel_layout(shape_a: tuple, shape_b: tuple) -> str | None:
    """``"same"``, ``"squeezed"`` (equal once size-1 spatial axes are dropped), ``"swapped"``
    (the last two axes of a 4-D kernel exchanged, of different sizes), or None."""
    if tuple(shape_a) == tuple(shape_b):
        return "same"
    if len(shape_a) < 3 or len(shape_b) < 3 or tuple(shape_a[:2]) != tuple(shape_b[:2]):
        return None
    core_a = [d for d in shape_a[2:] if d != 1]
    core_b = [d for d in shape_b[2:] if d != 1]
    if core_a == core_b:
        return "squeezed"
    if len(shape_a) == len(shape_b) == 4 and tuple(shape_a[2:]) == tuple(shape_b[:1:-1]):
        return "swapped"
    return None


def to_a_layout(w_b: np.ndarray, layout: str, shape_a: tuple) -> np.ndarray:
    """B's kernel in A's layout (``layout`` from :func:`kernel_layout`)."""
    if layout == "swapped":
        return np.ascontiguousarray(np.swapaxes(w_b, 2, 3))
    return w_b.reshape(shape_a)


def swapped_by_weights(w_a: np.ndarray, w_b: np.ndarray) -> bool | None:
    """Whether square kernels ``(out, in, k, k)`` of B are A's with their spatial axes swapped:
    True or False where the second moments over rows and over columns (``sum K K^T`` and
    ``sum K^T K`` over every kernel slice, unchanged by any order of units and channels) match
    clearly better one way, None where they do not tell."""
    if w_a.ndim != 4 or w_a.shape != w_b.shape or w_a.shape[2] != w_a.shape[3] or w_a.shape[2] < 2:
        return None
    ma, na = _moments(w_a)
    mb, nb = _moments(w_b)
    straight = np.linalg.norm(ma - mb) + np.linalg.norm(na - nb)
    crossed = np.linalg.norm(ma - nb) + np.linalg.norm(na - mb)
    if crossed < SWAP_MARGIN * straight:
        return True
    if straight < SWAP_MARGIN * crossed:
        return False
    return None


def _moments(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sum K K^T, sum K^T K)`` over the kernel slices, scaled to unit total."""
    k = as_single(w).astype(np.float64)
    rows = np.einsum("oihw,oigw->hg", k, k)
    cols = np.einsum("oihw,oihv->wv", k, k)
    total = np.trace(rows) or 1.0
    return rows / total, cols / total


def swap_flattened(w: np.ndarray, units: int, spatial: int, channels_last: bool) -> np.ndarray:
    """A dense weight ``(out, units * spatial)`` that reads a flattened square map, with the map's
    two spatial axes exchanged (column ``(u, y, x)`` becomes ``(u, x, y)``, or ``(y, x, u)``
    becomes ``(x, y, u)`` channels-last)."""
    side = int(round(np.sqrt(spatial)))
    out = w.shape[0]
    if channels_last:
        grid = w.reshape(out, side, side, units).transpose(0, 2, 1, 3)
    else:
        grid = w.reshape(out, units, side, side).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(grid.reshape(out, -1))


def kernel_layouts(pairs, la, lb, links_a, links_b, b_of, b_params) -> list[str]:
    """Put B's convolution kernels in A's layout, in place (:mod:`.layout`): spatial axes of size
    1 dropped or added, or height and width swapped, decided for the whole model (a package that
    transposes its images does so for every kernel) from the kernels whose shapes tell and from
    the second moments of square ones; with a swap, dense layers that read a flattened square map
    get their columns swapped too. Returns the transforms to report."""
    convs = [(la[i], lb[j]) for i, j in pairs if la[i].kind in ("conv", "conv_transpose")]
    shaped = [(x, y, kernel_layout(x.weight.shape, y.weight.shape)) for x, y in convs]
    votes = [v for v in (swapped_by_weights(as_single(x.weight), as_single(y.weight))
                         for x, y, how in shaped if how == "same") if v is not None]
    swapped = sum(how == "swapped" for *_, how in shaped) + sum(votes)
    straight = sum(not v for v in votes) + sum(
        how == "same" and x.weight.ndim == 4 and x.weight.shape[2] != x.weight.shape[3]
        for x, _, how in shaped)
    swap = swapped > straight
    notes, squeezed = [], 0
    for x, y, how in shaped:
        p = b_params[y.index]
        if how == "squeezed":
            p["weight"], squeezed = to_a_layout(p["weight"], how, x.weight.shape), squeezed + 1
        elif swap and x.weight.ndim == 4 and (how == "swapped" or x.weight.shape[2] == x.weight.shape[3]):
            p["weight"] = to_a_layout(p["weight"], "swapped", x.weight.shape)
    if squeezed:
        notes.append(f"{squeezed} convolution kernel(s) of B given A's size-1 spatial axes")
    if swap:
        flat = 0
        for x, y, _ in shaped:
            link_a, link_b = links_a.get(x.index), links_b.get(y.index)
            if (link_a is None or link_b is None or link_a.next is None
                    or b_of.get(link_a.next) != link_b.next or link_a.spatial < 4
                    or round(link_a.spatial ** 0.5) ** 2 != link_a.spatial):
                continue
            nxt = b_params[link_b.next]
            nxt["weight"] = swap_flattened(nxt["weight"], y.units, link_b.spatial,
                                           link_b.channels_last)
            flat += 1
        notes.append("B's convolution kernels have height and width swapped (images fed "
                     "transposed): put back in A's layout"
                     + (f", with the {flat} dense layer(s) that read a flattened map" if flat else ""))
    return notes
