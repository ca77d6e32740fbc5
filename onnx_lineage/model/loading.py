"""Safe loading of ONNX files, including external data kept beside the model.

External data is only read from files inside the model's own folder: no absolute paths, no ``..``,
no symbolic links that lead out, and the referenced byte range must lie inside the file. Anything
else is refused with a :class:`~onnx_lineage.errors.ModelError` before a byte is read.
"""

from __future__ import annotations

import heapq

import os
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import external_data_helper

from onnx_lineage.errors import ModelError
from onnx_lineage.model.weights import is_mapped, map_external, skeleton

#: Largest model file (protobuf plus external data) read by default, in bytes; override with the
#: environment variable ``ONNX_LINEAGE_MAX_MODEL_BYTES``. The weights are memory-mapped, not read
#: whole, so what bounds a run is what each command allocates, estimated before it starts
#: (:mod:`onnx_lineage.model.footprint`); this cap only refuses absurd files.
MAX_MODEL_BYTES = int(os.environ.get("ONNX_LINEAGE_MAX_MODEL_BYTES", 64 * 1024**3))
#: Deepest nesting of subgraphs (If branches, Loop and Scan bodies) read; override with the
#: environment variable ``ONNX_LINEAGE_MAX_SUBGRAPH_DEPTH``.
MAX_SUBGRAPH_DEPTH = int(os.environ.get("ONNX_LINEAGE_MAX_SUBGRAPH_DEPTH", 16))


@dataclass(frozen=True)
class LoadedModel:
    """An ONNX model read from disk.

    Attributes
    ----------
    proto : onnx.ModelProto
        The model; its weights stay in the files and are read in place
        (:mod:`onnx_lineage.model.weights`: external data referenced by absolute path).
    path : pathlib.Path
        Where it was read from.
    """

    proto: onnx.ModelProto
    path: Path

    @property
    def name(self) -> str:
        """The file name, used to label the model in results."""
        return self.path.name


def _check_external(model: onnx.ModelProto, folder: Path, max_bytes: int,
                    itself: str = "") -> None:
    """Refuse external data that lies outside ``folder`` or beyond its file's end (references to
    the model file ``itself``, as :func:`~onnx_lineage.model.weights.skeleton` makes them, are
    its own bytes, range-checked by the scan)."""
    root = folder.resolve()
    total = 0
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        if itself and external_data_helper.ExternalDataInfo(tensor).location == itself:
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        location = info.location or ""
        if not location or os.path.isabs(location) or ".." in Path(location).parts:
            raise ModelError(f"tensor {tensor.name!r} points to external data outside the model's "
                             f"folder ({location!r}); refused")
        target = (folder / location)
        resolved = target.resolve()
        if root not in resolved.parents:
            raise ModelError(f"tensor {tensor.name!r}: external file {location!r} leads outside the "
                             "model's folder; refused")
        if not resolved.is_file():
            raise ModelError(f"tensor {tensor.name!r}: external data file {location!r} not found "
                             "beside the model")
        size = resolved.stat().st_size
        offset = int(info.offset or 0)
        length = int(info.length) if info.length is not None else size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise ModelError(f"tensor {tensor.name!r}: external data range {offset}+{length} lies "
                             f"beyond the end of {location!r} ({size} bytes)")
        total += length
    if total > max_bytes:
        raise ModelError(f"external data totals {total} bytes, over the limit of {max_bytes}")


def subgraph_depth(graph: onnx.GraphProto, limit: int) -> int:
    """How deep subgraphs nest in ``graph`` (0: none), each visited once, without recursion;
    the walk stops as soon as it passes ``limit`` (the value returned is then ``limit + 1``)."""
    deepest, stack = 0, [(graph, 0)]
    while stack:
        g, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        for node in g.node:
            for a in node.attribute:
                subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
                stack.extend((sub, depth + 1) for sub in subs)
    return deepest


def as_loaded(model: str | os.PathLike | LoadedModel) -> LoadedModel:
    """``model`` as a :class:`LoadedModel`: loaded from its path (:func:`load_model`), or as
    given when it is one already."""
    return model if isinstance(model, LoadedModel) else load_model(model)


def load_model(path: str | os.PathLike, *, max_bytes: int | None = None,
               check: bool = True) -> LoadedModel:
    """Read and validate an ONNX file.

    Parameters
    ----------
    path : str or PathLike
        The ``.onnx`` file. External data files must sit in the same folder (or below it).
    max_bytes : int, optional
        Refuse models whose protobuf plus external data exceed this size (default
        :data:`MAX_MODEL_BYTES`).
    check : bool
        Run ``onnx.checker`` on the loaded model.

    Raises
    ------
    ModelError
        With a one-line message, for any file that cannot be read as a valid ONNX model.
    """
    max_bytes = MAX_MODEL_BYTES if max_bytes is None else max_bytes
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such file")
    if not p.is_file():
        raise ModelError(f"{p}: not a file")
    size = p.stat().st_size
    if size == 0:
        raise ModelError(f"{p}: empty file, not an ONNX model")
    if size > max_bytes:
        raise ModelError(f"{p}: {size} bytes, over the limit of {max_bytes}")
    itself = str(p.resolve())
    proto = skeleton(p)  # the graph parsed, the weights left in the file
    if proto is None:
        try:
            proto = onnx.load(str(p), load_external_data=False)
        except Exception as exc:  # protobuf raises several unrelated types
            raise ModelError(f"{p}: not a readable ONNX model ({type(exc).__name__})") from None
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelError(f"{p}: not an ONNX model (no graph nodes)")
    depth = subgraph_depth(proto.graph, MAX_SUBGRAPH_DEPTH)
    if depth > MAX_SUBGRAPH_DEPTH:
        raise ModelError(f"{p}: subgraphs nested more than {MAX_SUBGRAPH_DEPTH} deep, over the "
                         "limit (ONNX_LINEAGE_MAX_SUBGRAPH_DEPTH)")
    try:
        _check_external(proto, p.parent, max_bytes - size, itself)
    except (ValueError, TypeError, KeyError):
        raise ModelError(f"{p}: malformed external data reference") from None
    map_external(proto, p.parent)
    sort_nodes(proto.graph)
    if check:
        try:
            onnx.checker.check_model(_without_weights(proto))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if _DEPRECATED not in first:  # an op deprecated after the opset it was written in
                raise ModelError(f"{p}: invalid ONNX model: {first}") from None
    return LoadedModel(proto=proto, path=p)


#: What onnx's checker says of an op that a later opset deprecated (GroupNormalization-18): the
#: model is valid at its own opset, and onnxruntime runs it.
_DEPRECATED = "is deprecated in domain_version"


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Put the nodes of ``graph`` (and of its subgraphs) in an order where every node comes after
    the nodes it reads, in place, keeping the stored order where it already is one: ONNX asks for
    it, onnxruntime does not, and some converters (onnxruntime's float16 tool) write graphs out
    of order. A graph with a cycle is left as it is, for the checker to refuse."""
    produced = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    needs = []
    for node in graph.node:
        names = set(node.input)
        for a in node.attribute:  # a subgraph may read names of this graph
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                sort_nodes(sub)
                names |= {i for n in sub.node for i in n.input}
        needs.append({produced[i] for i in names if i in produced})
    if all(j < k for k, deps in enumerate(needs) for j in deps):
        return
    users: list[list[int]] = [[] for _ in needs]
    left = [0] * len(needs)
    for k, deps in enumerate(needs):
        for j in deps - {k}:
            users[j].append(k)
            left[k] += 1
    ready = [k for k, n in enumerate(left) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:  # Kahn's order, the earliest stored node first
        k = heapq.heappop(ready)
        order.append(k)
        for u in users[k]:
            left[u] -= 1
            if left[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(needs):
        return  # a cycle
    nodes = [graph.node[k] for k in order]
    kept = [onnx.NodeProto() for _ in nodes]
    for new, old in zip(kept, nodes):
        new.CopyFrom(old)
    del graph.node[:]
    graph.node.extend(kept)


def _without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` for the checker: the tensors read in place made empty (the checker
    refuses absolute locations; their byte ranges are checked when they are read)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in external_data_helper._get_all_tensors(out):
        if is_mapped(t):
            del t.external_data[:]
            t.data_location = onnx.TensorProto.DEFAULT
            del t.dims[:]
            t.dims.append(0)
    return out
