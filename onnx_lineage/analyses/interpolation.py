"""Models with interpolated weights: ``theta(alpha) = (1 - alpha) theta_A + alpha theta_B``.

Two ways to evaluate a point of the line, which must agree:

* :class:`InterpolatedModel` (the fast path): the base graph is rewritten once so that every
  interpolated weight is a graph input (``SessionOptions.add_initializer`` is not used: onnxruntime
  silently ignores overridden Conv weights, see TOOLCHAIN.md). One session serves every alpha; the
  Numba ``blend`` kernel writes all weights for an alpha into one preallocated buffer whose views
  are fed to onnxruntime.
* :func:`rebuilt_model` (the reference): a new ModelProto with the blended weights stored as
  initializers or attributes, and a new session. Slow, obviously correct, and the only option for
  weights held in attributes (scikit-learn's LinearClassifier).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from kernels.blend import blend
from onnx_lineage.model.graph import drop_unused_initializers
from onnx_lineage.model.parameters import Site


@dataclass(frozen=True)
class Endpoint:
    """One interpolated tensor: where it lives in the base graph, and its two endpoint values.

    Attributes
    ----------
    site : Site
    a, b : ndarray, float32
        Canonical values of the base model (A) and of the aligned other model (B).
    """

    site: Site
    a: np.ndarray
    b: np.ndarray


def stored_pair(e: Endpoint) -> tuple[np.ndarray, np.ndarray]:
    """Both endpoints in the site's stored orientation, flat."""
    return e.site.store(e.a).reshape(-1), e.site.store(e.b).reshape(-1)


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
    """

    PREFIX = "__lineage_w"

    def __init__(self, base: onnx.ModelProto, endpoints: list[Endpoint]):
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
        drop_unused_initializers(self.proto.graph)
        pairs = [stored_pair(e) for e in endpoints]
        self.a = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.float32)
        self.b = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.float32)
        self.buffer = np.empty_like(self.a)
        offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
        self.spans = list(zip(offsets[:-1], offsets[1:]))
        self.views = {n: self.buffer[o:o2].reshape(s)
                      for n, (o, o2), s in zip(self.names, self.spans, shapes)}
        self._alpha: float | None = None  # the alpha the buffer holds
        self._b_values: dict[int, np.ndarray] = {}  # endpoints whose B value was replaced

    @property
    def n_params(self) -> int:
        """Number of interpolated scalars."""
        return int(self.a.size)

    def weights(self, alpha: float) -> dict[str, np.ndarray]:
        """Feeds for ``alpha``: views into the shared buffer (valid until the next call)."""
        if alpha != self._alpha:
            blend(self.a, self.b, float(alpha), self.buffer)
            self._alpha = float(alpha)
        return self.views

    def b_value(self, k: int) -> np.ndarray:
        """Endpoint ``k``'s B value as last set (canonical orientation)."""
        return self._b_values.get(k, self.endpoints[k].b)

    def set_b(self, k: int, value: np.ndarray) -> None:
        """Give endpoint ``k`` a new B value (canonical orientation); only its segment of the
        buffer is blended again."""
        o, o2 = self.spans[k]
        self.b[o:o2] = self.endpoints[k].site.store(value).reshape(-1)
        self._b_values[k] = value
        if self._alpha is not None:
            blend(self.a[o:o2], self.b[o:o2], self._alpha, self.buffer[o:o2])


def rebuilt_model(base: onnx.ModelProto, endpoints: list[Endpoint], alpha: float) -> onnx.ModelProto:
    """A copy of ``base`` with every endpoint replaced by its blend at ``alpha`` (the reference)."""
    proto = copy.deepcopy(base)
    nodes = {n.name: n for n in proto.graph.node}
    for k, e in enumerate(endpoints):
        value = ((1 - alpha) * e.a.astype(np.float64) + alpha * e.b.astype(np.float64))
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
    drop_unused_initializers(proto.graph)
    return proto
