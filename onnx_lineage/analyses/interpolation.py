"""Models with interpolated weights: ``theta(t) = (1 - t) theta_A + t theta_B``.

Two ways to evaluate a point of the line, which must agree:

* :class:`InterpolatedModel` (the fast path): the base graph is rewritten once so that every
  interpolated weight is a graph input (``SessionOptions.add_initializer`` is not used: onnxruntime
  silently ignores overridden Conv weights, see TOOLCHAIN.md). One session serves every position; the
  Numba ``blend`` kernel writes all weights for a position into one preallocated buffer whose views
  are fed to onnxruntime.
* :func:`rebuilt_model` (the reference): a new ModelProto with the blended weights stored as
  initializers or attributes, and a new session. Slow, obviously correct, and the only option for
  weights held in attributes (scikit-learn's LinearClassifier).
"""

from __future__ import annotations

import copy
import os
from collections import deque
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from kernels.blend import blend, blend_2d, blend_mixed
from onnx_lineage.memory import plain_empty
from onnx_lineage.model.graph import drop_unused
from onnx_lineage.model.parameters import Site, kept
from onnx_lineage.model.stages import split
from onnx_lineage.model.weights import release_pages
from onnx_lineage.threads import pool


@dataclass(frozen=True)
class Endpoint:
    """One interpolated tensor: where it lives in the base graph, and its two endpoint values.

    Attributes
    ----------
    site : Site
    a, b : ndarray, float32 or float16
        Canonical values of the base model (A) and of the aligned other model (B); half-precision
        weights stay half (views of the file) and are widened chunk by chunk as they are blended.
    """

    site: Site
    a: np.ndarray
    b: np.ndarray


def _stored(site, canonical: np.ndarray) -> np.ndarray:
    """An endpoint in its site's stored orientation and kept precision (a view when it can be)."""
    return kept(site.stored_view(canonical))


#: Values of a half-precision endpoint widened at a time (:func:`blend_into`): small enough to
#: stay in cache between widening and blending.
CHUNK = 1 << 16
#: Values of an endpoint blended between two releases of the mapped pages
#: (:meth:`InterpolatedModel.weights`): a BERT-base word embedding (23M values) is read in six
#: parts, so its file pages are never all resident at once.
RELEASE_EVERY = 1 << 22
#: Threads that blend endpoints side by side (0: the CPU count, at most 4), for interpolated
#: models of at least :data:`THREADS_FROM` values (below, a pool costs more than it saves).
BLEND_THREADS = 0
THREADS_FROM = 1 << 22


def blend_into(a: np.ndarray, b: np.ndarray, t: float, out: np.ndarray) -> None:
    """``out = a + t (b - a)`` (all of one shape; ``out`` contiguous, float32) with the blend
    kernels, without copying strided endpoints of two axes.

    A float16 endpoint is never widened whole: :func:`kernels.blend.blend_mixed` widens it a chunk
    at a time in cache; widening is exact, so the result is bit for bit that of float32
    endpoints. A strided float16 endpoint (a permuted copy read transposed) is gathered a block
    of rows at a time first."""
    if a.dtype == np.float16 or b.dtype == np.float16:
        _blend_half(a, b, t, out)
    elif a.flags.c_contiguous and b.flags.c_contiguous:
        blend(a.reshape(-1), b.reshape(-1), t, out.reshape(-1))
    elif a.ndim == 2:
        blend_2d(a, b, t, out)
    else:
        blend(np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1), t,
              out.reshape(-1))


_NO_HALF, _NO_SINGLE = np.empty(0, np.uint16), np.empty(0, np.float32)


def _blend_half(a: np.ndarray, b: np.ndarray, t: float, out: np.ndarray) -> None:
    scratch = np.empty(2 * CHUNK, np.uint32)
    rows = out.shape[0] if out.ndim == 2 else 1
    step = rows if a.flags.c_contiguous and b.flags.c_contiguous else \
        max(1, (16 * CHUNK) // max(out.size // rows, 1))
    a2, b2, out2 = (x.reshape(rows, -1) if x.ndim != 2 else x for x in (a, b, out))
    for r0 in range(0, rows, step):
        flat = [np.ascontiguousarray(x[r0:r0 + step]).reshape(-1) for x in (a2, b2)]
        args = []
        for x in flat:
            half = x.dtype == np.float16
            args += [x.view(np.uint16) if half else _NO_HALF,
                     _NO_SINGLE if half else x.astype(np.float32, copy=False), half]
        blend_mixed(*args, float(t), out2[r0:r0 + step].reshape(-1), scratch)


def fast_path_supported(endpoints: list[Endpoint]) -> bool:
    """Whether every endpoint can be fed as a graph input (an input slot of a main-graph node)."""
    return all(isinstance(e.site.slot, int) and e.site.writable for e in endpoints)


class InterpolatedModel:
    """The base graph with its interpolated weights turned into graph inputs.

    Parameters
    ----------
    base : onnx.ModelProto
        Model A (nodes already uniquely named by :func:`extract_layers`).
    endpoints : list of Endpoint
    most : float, optional
        Run the graph a stage at a time (:mod:`onnx_lineage.model.stages`), each stage's
        interpolated weights at most this many bytes: the buffer then holds one stage's, blended
        as its stage comes (:meth:`weights` gives a :class:`StageWeights`). Default: one buffer
        for every weight.
    """

    PREFIX = "__lineage_w"

    def __init__(self, base: onnx.ModelProto, endpoints: list[Endpoint], most: float | None = None):
        if not fast_path_supported(endpoints):
            raise ValueError("some endpoints are attributes or read-only: use rebuilt_model")
        self.endpoints = endpoints
        self.proto = copy.deepcopy(base)
        nodes = {n.name: n for n in self.proto.graph.node}
        self.names, shapes = [], []
        for k, e in enumerate(endpoints):
            name = f"{self.PREFIX}{k}"
            nodes[e.site.node].input[e.site.slot] = name
            self.proto.graph.input.append(
                helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(e.site.shape)))
            self.names.append(name)
            shapes.append(tuple(e.site.shape))
        drop_unused(self.proto.graph)
        # the endpoints in stored orientation, views where they can be (A's often of the
        # memory-mapped file); one buffer for the blended weights (of a stage), fed to onnxruntime
        self._a = [_stored(e.site, e.a) for e in endpoints]
        self._b = [_stored(e.site, e.b) for e in endpoints]
        self.sizes = {n: 4.0 * int(np.prod(s)) for n, s in zip(self.names, shapes)}
        self.stages = None if most is None else split(self.proto, most, self.sizes)
        index = {n: k for k, n in enumerate(self.names)}
        #: endpoints by the part of the buffer they share: all of them, or each stage's
        self.groups = ([list(range(len(endpoints)))] if self.stages is None else
                       [[index[w] for w in st.weights if w in index] for st in self.stages])
        self.buffer = plain_empty(max((sum(int(np.prod(shapes[k])) for k in g)
                                       for g in self.groups), default=0))  # no huge-page stall
        self.views = {}
        for group in self.groups:
            offsets = np.cumsum([0] + [int(np.prod(shapes[k])) for k in group])
            self.views.update({self.names[k]: self.buffer[o:o2].reshape(shapes[k])
                               for k, o, o2 in zip(group, offsets[:-1], offsets[1:])})
        self._t: float | None = None  # the position the buffer holds (never, staged)
        self._b_values: dict[int, np.ndarray] = {}  # endpoints whose B value was replaced

    @property
    def n_params(self) -> int:
        """Number of interpolated scalars."""
        return int(sum(e.a.size for e in self.endpoints))

    def weights(self, t: float):
        """Feeds for ``t``: views into the shared buffer (valid until the next call); staged, a
        :class:`StageWeights` that blends each stage's as it comes."""
        if self.stages is not None:
            return StageWeights(self, float(t), {})
        if t != self._t:
            self._blend_all(t, {}, self.groups[0])
            self._t = float(t)
        return self.views

    def b_value(self, k: int) -> np.ndarray:
        """Endpoint ``k``'s B value as last set (canonical orientation)."""
        return self._b_values.get(k, self.endpoints[k].b)

    def set_b(self, k: int, value: np.ndarray) -> None:
        """Give endpoint ``k`` a new B value (canonical orientation); only its part of the
        buffer is blended again."""
        self._b[k] = _stored(self.endpoints[k].site, value)
        self._b_values[k] = value
        if self._t is not None:
            self._blend(k, self._b[k], self._t)

    def weights_with(self, t: float, values: dict):
        """Feeds for ``t`` with some endpoints' B replaced by the values given, each made and
        blended as its turn comes and not kept: a whole other B (a permuted copy) is never
        held, only the endpoint in hand. The endpoints keep their own B; the buffer then holds
        none of their points (the next :meth:`weights` blends it again).

        Parameters
        ----------
        t : float
        values : dict of int to callable
            Endpoint index to a function of no argument that returns its B value (canonical
            orientation); called once, in the dict's order within each stage.
        """
        self._t = None
        if self.stages is not None:
            return StageWeights(self, float(t), values)
        self._blend_all(t, values, self.groups[0])
        return self.views

    def _blend_all(self, t: float, values: dict, group: list) -> None:
        """The endpoints ``group`` at ``t`` into the buffer, ``values`` (endpoint index to a
        function that makes its canonical B value) standing in for their endpoints' B.

        Interpolated models of :data:`THREADS_FROM` values or more are blended on
        :data:`BLEND_THREADS` threads (the kernels release the GIL; each writes its own part of
        the buffer). A value is handed to a thread as it is made and the next made only once
        fewer than that many wait, so the values in hand stay a few layers; the endpoints' own
        follow, largest first."""
        threads = BLEND_THREADS or min(os.cpu_count() or 1, 4)
        if self.buffer.size < THREADS_FROM:
            threads = 1
        members = set(group)
        given = [k for k in values if k in members]
        with pool(threads) as workers:
            waiting: deque = deque()
            for k in given:
                while len(waiting) >= threads:
                    waiting.popleft().result()
                stored = _stored(self.endpoints[k].site, values[k]())
                waiting.append(workers.submit(self._blend, k, stored, t))
            rest = sorted((k for k in group if k not in values),
                          key=lambda k: -self.views[self.names[k]].size)
            waiting.extend(workers.submit(self._blend, k, self._b[k], t) for k in rest)
            for done in waiting:
                done.result()

    def _blend(self, k: int, b: np.ndarray, t: float) -> None:
        """Endpoint ``k`` at ``t`` against ``b`` (stored orientation) into its part of the
        buffer, :data:`RELEASE_EVERY` values at a time (whole rows), the mapped pages released
        after each: only the part in hand is resident."""
        a, out = self._a[k], self.views[self.names[k]]
        if out.ndim < 2 or out.size <= RELEASE_EVERY:
            blend_into(a, b, float(t), out)
            release_pages()
            return
        step = max(1, RELEASE_EVERY // (out.size // out.shape[0]))
        for r0 in range(0, out.shape[0], step):
            part = slice(r0, r0 + step)
            blend_into(a[part], b[part], float(t), out[part])
            release_pages()


class StageWeights:
    """One point of an interpolated model run a stage at a time
    (:class:`~onnx_lineage.model.stages.StageFeeds`): each stage's weights are blended into the
    buffer when its turn comes."""

    def __init__(self, model: InterpolatedModel, t: float, values: dict):
        self.model, self.t, self.values = model, t, values

    def stage(self, s: int, names: tuple) -> dict[str, np.ndarray]:
        """The interpolated weights of stage ``s`` (its weight inputs ``names``), blended."""
        group = self.model.groups[s]
        self.model._blend_all(self.t, self.values, group)
        return {self.model.names[k]: self.model.views[self.model.names[k]] for k in group}


def rebuilt_model(base: onnx.ModelProto, endpoints: list[Endpoint], t: float) -> onnx.ModelProto:
    """A copy of ``base`` with every endpoint replaced by its blend at ``t`` (the reference)."""
    proto = copy.deepcopy(base)
    nodes = {n.name: n for n in proto.graph.node}
    for k, e in enumerate(endpoints):
        value = ((1 - t) * e.a.astype(np.float64) + t * e.b.astype(np.float64))
        stored = e.site.store(value.astype(np.float32))
        node = nodes[e.site.node]
        if isinstance(e.site.slot, int):
            name = f"__lineage_ref{k}"
            proto.graph.initializer.append(numpy_helper.from_array(stored, name))
            node.input[e.site.slot] = name
        else:
            for a in node.attribute:
                if a.name == e.site.slot:
                    a.CopyFrom(helper.make_attribute(e.site.slot, stored.reshape(-1).tolist()))
    drop_unused(proto.graph)
    return proto
