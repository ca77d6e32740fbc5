"""Ray spaces: how a point ``t`` along a ray becomes the inputs of a model.

* :class:`ContinuousSpace`: ``x + t u`` in the flattened input, clipped to the valid range.
* :class:`DiscreteSpace`: token ids (and masks that follow them): from ``x`` towards another sample
  ``x'``, replace positions one at a time in a random order; ``t`` in ``[0, 1]`` is the fraction of
  positions replaced, and bisection runs on that count.

Both models of a pair see exactly the same query points; each gets them through its own inputs.
"""

from __future__ import annotations

import numpy as np

from kernels.boundary import ray_points
from onnx_lineage.data import Dataset, described, fit, sources


class ModelView:
    """One model's inputs over a sampled dataset: which input the rays move, and the rest."""

    def __init__(self, runner, data: Dataset, key: str, companions: tuple[str, ...], name: str):
        src = sources(runner.inputs, data, name)
        self.runner = runner
        self.name = name
        self.moved = [i for i in runner.inputs if src[i.name] == key]
        self.companions = [i for i in runner.inputs if src[i.name] in companions]
        self.fixed = {i.name: fit(i, (data.arrays if i.batch_axis is not None else data.fixed)
                                  [src[i.name]], name, described(data)) for i in runner.inputs
                      if src[i.name] != key and src[i.name] not in companions}
        self.src = src
        # one moved input that takes the rows as they are: feeds need no conversion
        have, want = data.arrays[key].shape[1:], self.moved[0].row_shape if self.moved else ()
        self.direct = (len(self.moved) == 1 and not self.companions and not self.fixed
                       and len(want) == len(have)
                       and all(w is None or w == h for w, h in zip(want, have))
                       and self.moved[0].dtype == data.arrays[key].dtype)

    def feeds(self, moved: np.ndarray, companions: dict, origin: np.ndarray) -> dict:
        """Feeds for query rows: ``moved`` (k, ...) for the moved input, the rest from ``origin``."""
        if self.direct and moved.dtype == self.moved[0].dtype and moved.flags.c_contiguous:
            return {self.moved[0].name: moved}
        f = {i.name: fit(i, moved, self.name) for i in self.moved}
        for i in self.companions:
            f[i.name] = fit(i, companions[self.src[i.name]], self.name)
        f.update(self.runner.take(self.fixed, origin))
        return f


class ContinuousSpace:
    """Straight rays in a continuous input, clipped to ``[lo, hi]`` per feature.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
        The moved array, flattened.
    lo, hi : ndarray of shape (d,), float32
    """

    discrete = False

    def __init__(self, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, shape: tuple):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.lo, self.hi = lo.astype(np.float32), hi.astype(np.float32)
        self.shape = shape
        self.scale = float(np.linalg.norm(self.hi - self.lo)) or 1.0

    def buffer(self, rays: int) -> np.ndarray:
        """Scratch space for the query points of up to ``rays`` rays, shape (rays, d); zeros, so
        rows not yet written are valid padding."""
        return np.zeros((rays, self.x.shape[1]), np.float32)

    def points(self, u, origin, active, t, buffer=None) -> tuple[np.ndarray, dict]:
        """Query points of the ``active`` rays at ``t``, shaped like the model input's rows.

        Written into ``buffer`` (from :meth:`buffer`) when given, so a search allocates once.
        """
        out = self.buffer(active.size) if buffer is None else buffer[:active.size]
        ray_points(self.x, u, origin, active, t, self.lo, self.hi, out)
        return out.reshape((active.size,) + self.shape), {}


class DiscreteSpace:
    """Position-replacement paths between token sequences.

    Parameters
    ----------
    x : ndarray of shape (n, L), integer
        The moved array (token ids).
    companions : dict of str to ndarray of shape (n, L)
        Arrays that follow the same replacements (attention masks, token type ids).
    """

    discrete = True

    def __init__(self, x: np.ndarray, companions: dict):
        self.x = x
        self.companions = companions
        self.length = x.shape[1]
        self.scale = 1.0
        self.partner: np.ndarray | None = None
        self.rank: np.ndarray | None = None

    def set_paths(self, partner: np.ndarray, rank: np.ndarray) -> None:
        """Partner rows (R,) and position ranks (R, L): position p is replaced once ``k > rank``."""
        self.partner, self.rank = partner, rank

    def buffer(self, rays: int) -> None:
        """Discrete paths build fresh rows every step (no scratch space)."""
        return None

    def points(self, u, origin, active, t, buffer=None) -> tuple[np.ndarray, dict]:
        k = np.ceil(t[active] * self.length - 1e-9)
        mask = self.rank[active] < k[:, None]
        o, p = origin[active], self.partner[active]
        moved = np.where(mask, self.x[p], self.x[o])
        comp = {name: np.where(mask, arr[p], arr[o]) for name, arr in self.companions.items()}
        return moved, comp
